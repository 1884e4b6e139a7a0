"""Stage `serve`: load a reward model, compile its shapes, answer HTTP until SIGTERM."""
import ipaddress
import os
import socket
from typing import Any, Callable

import ml_collections
from absl import logging

from gram_jax import storage
from gram_jax.config import serve as serve_section
from gram_jax.config.mesh import device_mesh
from gram_jax.data.encode import PromptEncoder
from gram_jax.errors import GramError
from gram_jax.inference.generate import Generator
from gram_jax.judge_card import DEFAULT_PROMPT_LEN
from gram_jax.serving.lifecycle import serve_until_terminated
from gram_jax.serving.server import RewardServer
from gram_jax.models.decoder import Decoder
from gram_jax.pretrained import load_tokenizer
from gram_jax.stages import common


def api_key(s: ml_collections.ConfigDict) -> str:
  """The key from serve.api_key_file (stripped: files end in a newline) or the environment
  variable serve.api_key_env; empty means none."""
  if s.api_key_file:
    try:
      return storage.read_text(s.api_key_file).strip()
    except OSError as e:
      raise GramError(f"serve.api_key_file: {s.api_key_file}: cannot read ({e})") from None
  return os.environ.get(s.api_key_env, "").strip()


def is_loopback(host: str) -> bool:
  try:
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
  except OSError:
    return False
  return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                 for a in addresses)


def check_exposure(host: str, key: str) -> None:
  """An open reward server on a reachable address lets anyone spend its accelerator."""
  if not key and not is_loopback(host):
    raise GramError(f"serve.host={host!r} is reachable from other machines but no API key is "
                    "set: set serve.api_key_file or the serve.api_key_env variable, or serve "
                    "on 127.0.0.1")


def build_server(c: ml_collections.ConfigDict) -> RewardServer:
  s = c.serve
  key = api_key(s)
  check_exposure(s.host, key)
  mesh = device_mesh(c)
  # A verdict judge serves prompts up to 2,048 tokens unless serve.max_len says more: the
  # warm-up compiles every length bucket, which up to a 40k context would be hundreds.
  reward = common.reward_model(c, mesh, s.max_len, s.batch_size, DEFAULT_PROMPT_LEN)
  if s.warm_up:
    logging.info("compiled %d scoring shapes (rows x length buckets)", reward.warm_up())
  reference = greedy_references(
      common.load_model(c, s.reference_model, mesh), load_tokenizer(s.reference_model),
      s.reference_max_new_tokens, s.batch_size, reward.max_len, mesh) \
      if s.reference_model else None
  return RewardServer(reward, serve_section.limits(c), key, reference,
                      model_name=s.model_name or served_model_name(c.model.path),
                      rlhf_readout=s.rlhf_readout)


_GENERIC_FOLDERS = {"hf", "export", "exported", "model", "models", "checkpoints", "latest",
                    "final", "output", "out"}


def served_model_name(path: str) -> str:
  """The name clients see: the last folder of `path` that names the model (runs/gram-qwen3/hf
  -> gram-qwen3), skipping export and checkpoint folders and step numbers."""
  for part in reversed([p for p in path.replace("\\", "/").split("/") if p]):
    if part.lower() not in _GENERIC_FOLDERS and not part.isdigit() and ":" not in part:
      return part
  return "gram_jax"


def greedy_references(model: Decoder, tokenizer: Any, max_new_tokens: int, batch_size: int,
                      max_len: int, mesh) -> Callable[[list[str]], tuple[list[str], list[bool]]]:
  """A frozen policy's greedy answer to each prompt (rendered as one user turn, the
  question cut to fit max_len, never the chat header): the fallback reference for /reward
  samples sent without one; also says which prompts were cut."""
  generator = Generator(model, tokenizer, batch_size, max_len, mesh)
  prompts = PromptEncoder(tokenizer, max_len, "{input}", values=lambda f: {"input": f["prompt"]},
                          trim_order=(("prompt",),), budget_name="serve.max_len")

  def answer(questions: list[str]) -> tuple[list[str], list[bool]]:
    encoded, trimmed = prompts.encode([{"prompt": q} for q in questions])
    texts = [g.text.strip() for g in generator.generate(encoded, max_new_tokens,
                                                         field="reference prompts")]
    return texts, [bool(t) for t in trimmed]
  return answer


def run(c: ml_collections.ConfigDict) -> None:
  server = build_server(c)
  logging.info("serving %s on http://%s:%d (API key %s)", c.model.path, c.serve.host,
               c.serve.port, "required" if server.api_key else "off")
  serve_until_terminated(server, c.serve.host, c.serve.port, c.serve.grace_s)
