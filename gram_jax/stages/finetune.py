"""GRAM stage 2: label-smoothed preference fine-tuning on the verdict token.

Each labeled pair becomes the judging prompt (both orders when data.both_orders); the loss is
cross-entropy over the two label-token logits at the verdict position with label smoothing
(official `gram_loss`). Held-out accuracy (official both-order readout) is logged as it trains.
"""
import os

import ml_collections

from gram_jax import configlib
from gram_jax.data import synthetic
from gram_jax.stages import common, recipes

BUILTIN_EVAL_PAIRS = 200


def builtin_files(c: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
  """Labeled synthetic pairs for training and a held-out file that shares no pair with it."""
  data = os.path.join(c.workdir, "data")
  splits = {}
  def split(name: str) -> list[dict]:
    if not splits:
      splits.update(synthetic.disjoint_splits(
          {"heldout": BUILTIN_EVAL_PAIRS, "train": c.data.builtin_pairs}, c.seed,
          configlib.builtin_tasks(c)))
    return splits[name]
  train = common.builtin_jsonl(os.path.join(data, "train_pairs.jsonl"), lambda: split("train"))
  held_out = common.builtin_jsonl(os.path.join(data, "eval_pairs.jsonl"),
                                 lambda: split("heldout"))
  return [train], [held_out]


def run(c: ml_collections.ConfigDict) -> None:
  train_files = configlib.data_files(c.data.train_files)
  eval_files = configlib.data_files(c.eval.files)
  if not train_files:
    train_files, eval_files = builtin_files(c)
  recipes.finetune_verdicts(c, train_files, eval_files)
