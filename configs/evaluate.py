"""Score benchmark files with a reward model and report with the official grouping rules.

  python -m gram_jax.main --config=configs/evaluate.py --config.model.path=MODEL \
      --config.eval.files=rewardbench.json,judgebench.json,rmbench_chat.json
  # a released GRAM-RR checkpoint, read as its model card says, with voting@16:
  python -m gram_jax.main --config=configs/evaluate.py --config.model.path=GRAM-RR-LLaMA-3.2-3B \
      --config.template.judge=gram_rr --config.reasoning.preset=release \
      --config.reasoning.votes=16 --config.eval.files=rmbench_chat.json
"""
from gram_jax import configlib


def get_config(preset: str = ""):
  c = configlib.base_config("evaluate")
  c.eval.batch_size = 16
  c.eval.max_len = 2048
  c.reasoning = configlib.reasoning_config()
  if preset:
    configlib.apply_model_preset(c, preset)
  return c
