"""The files a self-training run reads and writes: the configured data or the built-in
task's disjoint splits, and results written once, atomically, by process 0."""
import functools
import json
import os
from typing import Any, Callable

import jax
import ml_collections

from gram_jax import parallel, storage
from gram_jax.config.data import builtin_tasks, named_files
from gram_jax.data import synthetic
from gram_jax.stages import common


def read_json(path: str) -> Any:
  return json.loads(storage.read_text(path))


def read_jsonl(path: str) -> list[dict]:
  return [json.loads(line) for line in storage.read_text(path).splitlines()]


def publish(path: str, write: Callable[[], Any]) -> None:
  """Process 0 writes `path`; every process returns only once it is there to read."""
  if jax.process_index() == 0:
    write()
  parallel.sync(f"wrote:{path}")


def once(path: str, make: Callable[[], Any]) -> Any:
  """Runs `make` unless its JSON result at `path` exists; writes it atomically."""
  if storage.exists(path):
    return read_json(path)
  value = make()
  publish(path, lambda: storage.write_atomic(path, json.dumps(value)))
  return value


def builtin_splits(c: ml_collections.ConfigDict) -> dict[str, list[dict]]:
  """The built-in task's splits, pairwise disjoint: no held-out pair is in any
  training-side set, and every round gets a fresh unlabeled pool."""
  s = c.self_train
  sizes = {"heldout": s.heldout_pairs, "seed": s.seed_pairs, "labeled": s.labeled_pairs,
           **{f"unlabeled_{r}": s.unlabeled_pairs for r in range(1, s.rounds + 1)},
           "task": s.task_pairs}
  if s.export == "best_validation":  # drawn last: every other split stays as it was
    sizes["validation"] = s.validation_pairs
  return synthetic.disjoint_splits(sizes, c.seed, builtin_tasks(c))


def data_files(c: ml_collections.ConfigDict) -> dict[str, list[str]]:
  """The configured files, or the built-in task's: seed proofs, a few labeled pairs,
  unlabeled pools (gold kept aside for the report), the task's own pairs and a held-out
  split."""
  s = c.self_train
  if named_files(s.labeled_files):
    return {"seed": named_files(s.seed_files),
            "labeled": named_files(s.labeled_files),
            "task": named_files(s.task_files),
            "heldout": named_files(s.heldout_files),
            "validation": named_files(s.validation_files),
            "unlabeled": named_files(s.unlabeled_files)}
  path = lambda name: os.path.join(c.workdir, "data", name)
  splits = functools.cache(lambda: builtin_splits(c))
  split = lambda name: splits()[name]
  return {
      "seed": [common.builtin_jsonl(path("seed_proofs.jsonl"),
                                   lambda: synthetic.as_proved(split("seed"), c.seed))],
      "labeled": [common.builtin_jsonl(path("labeled.jsonl"), lambda: split("labeled"))],
      "task": [common.builtin_jsonl(path("task.jsonl"), lambda: split("task"))],
      "heldout": [common.builtin_jsonl(path("heldout.jsonl"), lambda: split("heldout"))],
      "validation": [common.builtin_jsonl(path("validation.jsonl"), lambda: split("validation"))]
                    if s.export == "best_validation" else [],
      "unlabeled": [common.builtin_jsonl(
          path(f"unlabeled_{r}.jsonl"),
          lambda r=r: synthetic.as_unlabeled(split(f"unlabeled_{r}"), c.seed + r))
                    for r in range(1, s.rounds + 1)]}


def trimmed_proofs(path: str) -> int:
  """Proof prompts of a proofs file that were cut by fields to fit."""
  return sum(bool(row.get("prompt_trimmed")) for row in read_jsonl(path))
