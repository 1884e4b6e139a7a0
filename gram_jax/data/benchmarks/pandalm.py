"""PandaLM's test set: accuracy against the majority of three annotators on the pairs whose
majority is not a tie (a reward model orders, it does not tie), and on the unanimous ones."""
from typing import Any, Iterable

from gram_jax.data import preference
from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, pct, row_format)


def summary(correct_unanimous: Iterable[tuple[bool, bool]], ties: int) -> dict[str, Any]:
  rows = list(correct_unanimous)
  unanimous = [ok for ok, all_agree in rows if all_agree]
  return {"benchmark": "pandalm", "pairs": len(rows),
          "accuracy": accuracy([ok for ok, _ in rows]), "unanimous_pairs": len(unanimous),
          "unanimous_accuracy": accuracy(unanimous), "ties_excluded": ties}


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  """Records whose annotators' majority is a tie are counted, not judged."""
  labels = [preference.pandalm_label(row, where) for where, row in rows]
  rows = [r for r, label in zip(rows, labels) if label]
  _, outcomes, flags, results = judge_pairs(judge, rows)
  unanimous = [len({r["annotator1"], r["annotator2"], r["annotator3"]}) == 1 for _, r in rows]
  return results, summary(zip(flags, unanimous), labels.count(0)), outcomes


def table(s: dict[str, Any]) -> list[str]:
  return ["| pairs (majority not a tie) | accuracy | unanimous pairs | accuracy | "
          "ties excluded |", "|---|---|---|---|---|",
          f"| {s['pairs']} | {pct(s['accuracy'])} | {s['unanimous_pairs']} | "
          f"{pct(s['unanimous_accuracy'])} | {s['ties_excluded']} |"]


BENCHMARK = Benchmark("pandalm", "PandaLM test set",
                      lambda first, path: row_format(first) == "pandalm", score, table)
