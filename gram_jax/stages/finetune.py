"""GRAM stage 2: label-smoothed preference fine-tuning on the verdict token.

Each labeled pair becomes the judging prompt (both orders when data.both_orders); the loss is
cross-entropy over the two label-token logits at the verdict position with label smoothing
(official `gram_loss`). Held-out accuracy (official both-order readout) is logged as it trains.
"""
import functools

import ml_collections

from gram_jax.config.data import builtin_tasks, named_files
from gram_jax.data import synthetic
from gram_jax.stages import common, recipes

BUILTIN_EVAL_PAIRS = 200


def run(c: ml_collections.ConfigDict) -> None:
  """Labeled pairs, or the built-in ones: training pairs and a held-out file that shares no
  pair with them."""
  splits = functools.cache(lambda: synthetic.disjoint_splits(
      {"heldout": BUILTIN_EVAL_PAIRS, "train": c.data.builtin_pairs}, c.seed,
      builtin_tasks(c)))
  train_files = common.files_or_builtin(c, c.data.train_files,
                                        {"train_pairs.jsonl": lambda: splits()["train"]})
  eval_files = (named_files(c.eval.files) if named_files(c.data.train_files)
                else common.files_or_builtin(c, "", {"eval_pairs.jsonl":
                                                     lambda: splits()["heldout"]}))
  recipes.finetune_verdicts(c, train_files, eval_files)
