"""Stage `serve`: load a reward model, compile its shapes, answer HTTP until stopped."""
import os
from typing import Callable

import ml_collections
from absl import logging
from aiohttp import web

from gram_jax import parallel
from gram_jax.inference.generate import Generator
from gram_jax.inference.server import Limits, RewardServer
from gram_jax.pretrained import load_pretrained, load_tokenizer
from gram_jax.stages import setup
from gram_jax.text.tokenizer import encode_user_turns


def build_server(c: ml_collections.ConfigDict) -> RewardServer:
  s = c.serve
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  reward = setup.reward_model(c, mesh, s.max_len, s.batch_size)
  if s.warm_up:
    logging.info("compiled %d length buckets", reward.warm_up())
  limits = Limits(s.max_body_bytes, s.max_pairs, s.max_text_chars, s.max_input_tokens,
                  s.max_batch_pairs, s.max_wait_ms)
  reference = greedy_references(s.reference_model, s.reference_max_new_tokens, s.batch_size,
                                s.max_len, mesh) if s.reference_model else None
  return RewardServer(reward, limits, os.environ.get(s.api_key_env, ""), reference)


def greedy_references(path: str, max_new_tokens: int, batch_size: int, max_len: int,
                      mesh) -> Callable[[list[str]], list[str]]:
  """The reference policy's greedy answer to each prompt (rendered as one user turn)."""
  tokenizer = load_tokenizer(path)
  generator = Generator(load_pretrained(path, mesh=mesh), tokenizer, batch_size, max_len, mesh)
  return lambda prompts: [g.text.strip() for g in generator.generate(
      encode_user_turns(tokenizer, "{input}", [{"input": p} for p in prompts]),
      max_new_tokens)]


def run(c: ml_collections.ConfigDict) -> None:
  server = build_server(c)
  logging.info("serving %s on http://%s:%d (API key %s)", c.model.path, c.serve.host,
               c.serve.port, "required" if server.api_key else "off")
  web.run_app(server.app(), host=c.serve.host, port=c.serve.port, print=None)
