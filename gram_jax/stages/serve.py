"""Stage `serve`: load a reward model, compile its shapes, answer HTTP until stopped."""
import os

import ml_collections
from absl import logging
from aiohttp import web

from gram_jax import configlib, parallel
from gram_jax.reward import RewardModel
from gram_jax.server import Limits, RewardServer


def build_server(c: ml_collections.ConfigDict) -> RewardServer:
  s = c.serve
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  reward = RewardModel.from_pretrained(
      c.model.path, mesh=mesh, compute_dtype=configlib.compute_dtype(c), max_len=s.max_len,
      batch_size=s.batch_size, template=configlib.judge_template(c),
      labels=tuple(c.template.labels), chat_template=c.tokenizer.chat_template or None,
      prefer_card=True)
  if s.warm_up:
    logging.info("compiled %d length buckets", reward.warm_up())
  limits = Limits(s.max_body_bytes, s.max_pairs, s.max_text_chars, s.max_input_tokens,
                  s.max_batch_pairs, s.max_wait_ms)
  return RewardServer(reward, limits, api_key=os.environ.get(s.api_key_env, ""))


def run(c: ml_collections.ConfigDict) -> None:
  server = build_server(c)
  logging.info("serving %s on http://%s:%d (API key %s)", c.model.path, c.serve.host,
               c.serve.port, "required" if server.api_key else "off")
  web.run_app(server.app(), host=c.serve.host, port=c.serve.port, print=None)
