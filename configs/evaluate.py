"""Score benchmark files with a reward model and report with the official grouping rules.

  python -m gram_jax.main --config=configs/evaluate.py --config.model.path=MODEL \
      --config.eval.files=rewardbench.json,judgebench.json,rmbench_chat.json
  # a released GRAM-RR checkpoint, read as its model card says (the GRAM-RR prompt, one
  # order, temperature 0.75, 2,048 new tokens, 8,192-token context), with voting@16:
  python -m gram_jax.main --config=configs/evaluate.py --config.model.path=GRAM-RR-LLaMA-3.2-3B \
      --config.reasoning.preset=release --config.reasoning.votes=16 \
      --config.eval.files=rmbench_chat.json
  # the same judge read by gram_jax's stricter protocol: 8 judgments in each order
  #   --config.reasoning.orders=2

The judge's prompt, labels, chat template and reasoning come from its judge card
(judge.json) unless set here; eval.max_len 0 is the judge's prompt budget (release: 6,144).
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset


def get_config(preset: str = ""):
  c = configlib.judge_reader_config("evaluate")
  if preset:
    apply_model_preset(c, preset)
  return c
