"""Best-of-n: the winner of each row's candidates by a reward model.

  python -m gram_jax.main --config=configs/best_of_n.py --config.model.path=MODEL \
      --config.best_of_n.input=candidates.jsonl --config.best_of_n.output=winners.jsonl
  # --config.best_of_n.method=linear (default, the official scan), knockout, round_robin,
  # bradley_terry; a released GRAM-RR checkpoint with voting@5, read as its model card does:
  #   --config.reasoning.preset=release --config.reasoning.votes=5

Input rows: {"prompt": str, "responses": [str, ...], ...}; each output row is the input row
plus best_index, best_response and the per-response scores the method used. The judge's
prompt, labels, chat template and reasoning come from its judge card unless set here.
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset
from gram_jax.config import best_of_n


def get_config(preset: str = ""):
  c = configlib.judge_reader_config("best_of_n")
  best_of_n.add_defaults(c)
  if preset:
    apply_model_preset(c, preset)
  return c
