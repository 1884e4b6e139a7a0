"""Serve a reward model over HTTP for RLHF and best-of-n.

  python -m gram_jax.main --config=configs/serve.py --config.model.path=MODEL
  # on every interface: a key is required (here from a file; or GRAM_JAX_API_KEY=secret)
  python -m gram_jax.main --config=configs/serve.py --config.model.path=MODEL \
      --config.serve.port=8000 --config.serve.host=0.0.0.0 --config.serve.api_key_file=key.txt

A host other than loopback needs a key. Clients: README "Reward server for RLHF".
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset
from gram_jax.config import serve


def get_config(preset: str = ""):
  c = configlib.judge_reader_config("serve")
  serve.add_defaults(c)
  if preset:
    apply_model_preset(c, preset)
  return c
