"""HHH alignment as prometheus-eval packages it: accuracy per source (harmless, helpful,
honest, other) and over all pairs (RewardBench's anthropic_hhh figure)."""
import collections
from typing import Any, Iterable

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, row_format, totals_table)


def summary(source_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  by_source: dict[str, list[bool]] = collections.defaultdict(list)
  flags = []
  for source, correct in source_correct:
    flags.append(bool(correct))
    by_source[source].append(bool(correct))
  return {"benchmark": "hhh", "pairs": len(flags), "overall": accuracy(flags),
          "groups": {s: accuracy(f) for s, f in sorted(by_source.items())}}


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  pairs, outcomes, flags, results = judge_pairs(judge, rows)
  return results, summary((p.extra.get("source", ""), ok) for p, ok in zip(pairs, flags)), \
      outcomes


BENCHMARK = Benchmark("hhh", "HHH alignment", lambda first, path: row_format(first) == "hhh",
                      score, lambda s: totals_table(s, [("overall", "all pairs")]))
