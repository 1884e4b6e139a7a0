"""Serve a reward model over HTTP for RLHF and best-of-n.

  python -m gram_jax.main --config=configs/serve.py --config.model.path=MODEL \
      [--config.serve.port=8000] [--config.serve.host=0.0.0.0]
  GRAM_JAX_API_KEY=secret python -m gram_jax.main ...   # then every request needs the key
"""
import ml_collections

from gram_jax import configlib


def get_config(preset: str = ""):
  c = configlib.base_config("serve")
  c.serve = ml_collections.ConfigDict(dict(
      host="127.0.0.1",              # loopback unless you say otherwise
      port=8000,
      api_key_env="GRAM_JAX_API_KEY",  # environment variable holding the key; unset = open
      batch_size=16,                 # prompts per jitted call
      max_len=2048,                  # tokens of one judging prompt
      max_batch_pairs=64,            # pairs gathered across requests into one batch
      max_wait_ms=5.0,               # how long a batch waits for more requests
      max_body_bytes=4 << 20,
      max_pairs=256,                 # pairs / responses in one request
      max_text_chars=100_000,        # one prompt or response
      max_input_tokens=8192,         # prompt + both responses
      warm_up=True,                  # compile every length bucket before listening
      reference_model="",            # /reward without references: this policy's greedy answer
      reference_max_new_tokens=512,
  ))
  c.reasoning = configlib.reasoning_config()  # a GRAM-R² judge: votes, temperature, score
  if preset:
    configlib.apply_model_preset(c, preset)
  return c
