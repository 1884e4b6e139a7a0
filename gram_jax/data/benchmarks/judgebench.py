"""JudgeBench: each pair in the file's own A/B order; micro = accuracy over all pairs (the
official scorer), macro = the mean of the four groups' accuracies (what the GRAM and Skywork
tables print)."""
import collections
from typing import Any, Iterable

import numpy as np

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, totals_table)

GROUPS = {"Knowledge": "mmlu-pro", "Reasoning": "livebench-reasoning",
          "Math": "livebench-math", "Coding": "livecodebench"}


def group(source: str) -> str | None:
  for name, key in GROUPS.items():
    if key in source:
      return name
  return None


def summary(source_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  by_group: dict[str, list[bool]] = collections.defaultdict(list)
  flags = []
  for source, correct in source_correct:
    flags.append(bool(correct))
    by_group[group(source) or "Other"].append(bool(correct))
  groups = {g: accuracy(by_group[g]) for g in GROUPS if by_group[g]}
  return {"benchmark": "judgebench", "pairs": len(flags), "micro": accuracy(flags),
          "macro": float(np.mean(list(groups.values()))) if groups else float("nan"),
          "groups": groups, "other_source_pairs": len(by_group.get("Other", []))}


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  given = lambda pair: {"A>B": True, "B>A": False}.get(str(pair.extra.get("label")))
  _, outcomes, flags, results = judge_pairs(judge, rows, given)
  return results, summary((str(r.get("source", "")), ok)
                          for (_, r), ok in zip(rows, flags)), outcomes


BENCHMARK = Benchmark(
    "judgebench", "JudgeBench", lambda first, path: "source" in first, score,
    lambda s: totals_table(s, [("micro", "micro (official scorer)"),
                               ("macro", "macro (mean of groups)")]))
