"""Labeled pairs of any format: plain accuracy (every file no other benchmark recognises)."""
from typing import Any

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, pct)


def summary(flags: list[bool]) -> dict[str, Any]:
  return {"benchmark": "pairs", "pairs": len(flags), "accuracy": accuracy(flags)}


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  _, outcomes, flags, results = judge_pairs(judge, rows)
  return results, summary(flags), outcomes


def table(s: dict[str, Any]) -> list[str]:
  return ["| pairs | accuracy |", "|---|---|", f"| {s['pairs']} | {pct(s['accuracy'])} |"]


BENCHMARK = Benchmark("pairs", "labeled pairs (plain accuracy)", lambda first, path: True,
                      score, table)
