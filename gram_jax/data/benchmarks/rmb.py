"""RMB's pairwise set: accuracy per subset (category_path, one file each), a goal's accuracy
= the mean of its subsets', overall = the mean of the goals. Its best-of-n set (rmb_bon)
is grouped the same way."""
import collections
from typing import Any, Iterable

import numpy as np

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, row_format, totals_table)


def goal(subset: str) -> str:
  """'Pairwise_set/Helpfulness/Chat/Discussion' -> 'Helpfulness'."""
  parts = subset.split("/")
  return parts[1] if len(parts) > 1 else "unknown"


def subset_of(row: dict, where: str) -> str:
  """RMB's subset: the record's category_path, else its file's path from the set folder."""
  if isinstance(row.get("category_path"), str):
    return row["category_path"]
  path = where.rsplit("[", 1)[0]
  for root in ("Pairwise_set", "BoN_set"):
    if f"{root}/" in path:
      return root + path.split(root, 1)[1].split(".json")[0]
  return path


def summary(kind: str, subset_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  """RMB's scoring, pairs or best-of-n groups alike (`kind` names which)."""
  by_subset: dict[str, list[bool]] = collections.defaultdict(list)
  for subset, correct in subset_correct:
    by_subset[subset].append(bool(correct))
  subsets = {s: accuracy(f) for s, f in sorted(by_subset.items())}
  by_goal = collections.defaultdict(list)
  for subset, value in subsets.items():
    by_goal[goal(subset)].append(value)
  goals = {g: float(np.mean(a)) for g, a in sorted(by_goal.items())}
  return {"benchmark": kind, "items": sum(map(len, by_subset.values())),
          "overall": float(np.mean(list(goals.values()))) if goals else float("nan"),
          "groups": goals, "subsets": subsets}


def table(s: dict[str, Any]) -> list[str]:
  return totals_table(s, [("overall", "overall (mean of goals)")])


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  _, outcomes, flags, results = judge_pairs(judge, rows)
  return results, summary("rmb", ((subset_of(r, w), ok)
                                  for (w, r), ok in zip(rows, flags))), outcomes


BENCHMARK = Benchmark("rmb", "RMB pairwise", lambda first, path: row_format(first) == "rmb",
                      score, table)
