"""What every benchmark module builds on: the Benchmark record, the judge it is handed, the
readout rules shared by all (which response won, what a report adds), and record
selection."""
import dataclasses
from typing import Any, Callable, Iterable

import numpy as np

from gram_jax.data import preference

Triple = tuple[str, str, str]  # (prompt, chosen, rejected)
# A judge: outcomes of (prompt, chosen, rejected) triples, each shown in the order given
# (True: chosen first; None: the judge's own rule). An outcome holds "a" (chosen's score),
# "b", "trimmed", "consistent" and the reasoning judge's readouts.
Judge = Callable[[list[Triple], list[bool | None] | None], list[dict[str, Any]]]
Rows = list[tuple[str, dict]]  # (where, record)
Scored = tuple[list[dict], dict[str, Any], list[dict[str, Any]]]  # results, summary, outcomes


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """One benchmark as published. `recognises(first_record, path)` picks it for a file;
  `score(judge, rows, path)` judges its pairs in its order and returns per-record results,
  the summary (grouped by its rules, "benchmark" = name) and the outcomes; `table(summary)`
  renders the summary's Markdown table; `detail(summary)` adds to its title."""
  name: str
  title: str
  recognises: Callable[[dict, str], bool]
  score: Callable[[Judge, Rows, str], Scored]
  table: Callable[[dict[str, Any]], list[str]]
  detail: Callable[[dict[str, Any]], str] = lambda summary: ""


def row_format(first: dict) -> str:
  """The preference parser's name for a record's format ("" for a record that is no object)."""
  return preference.row_format(first).name if isinstance(first, dict) else ""


def accuracy(flags: list[bool]) -> float:
  return float(np.mean(flags)) if flags else float("nan")


def pct(x: float) -> str:
  return "n/a" if x != x else f"{100 * x:.1f}"


def correct(outcome: dict[str, Any]) -> bool:
  """The published readout: the voting@k verdict for a reasoning judge, else the
  both-order score (chosen is the pair's response_a)."""
  if "voting_correct" in outcome:
    return bool(outcome["voting_correct"])
  return outcome["a"] > outcome["b"]


def readout(outcome: dict[str, Any]) -> dict[str, Any]:
  """An outcome's readouts, without the scores a result row names itself."""
  return {k: v for k, v in outcome.items() if k not in ("a", "b")}


def judge_pairs(judge: Judge, rows: Rows, given_order: Callable[[preference.PreferencePair],
                                                                bool | None] = lambda p: None
                ) -> tuple[list[preference.PreferencePair], list[dict], list[bool],
                           list[dict]]:
  """One (prompt, chosen, rejected) pair per record: the pairs, outcomes, correctness and
  result rows (the record's fields plus scores and readouts)."""
  pairs = [preference.parse_preference_pair(row, where) for where, row in rows]
  outcomes = judge([(p.prompt, p.chosen, p.rejected) for p in pairs],
                   [given_order(p) for p in pairs])
  flags = [correct(o) for o in outcomes]
  results = [{**row, "score_chosen": o["a"], "score_rejected": o["b"], "correct": ok,
              **readout(o)} for (_, row), o, ok in zip(rows, outcomes, flags)]
  return pairs, outcomes, flags, results


def totals_table(summary: dict[str, Any], totals: Iterable[tuple[str, str]]) -> list[str]:
  """One row: each group's accuracy, then the named totals ((summary key, column name))."""
  groups, totals = summary["groups"], list(totals)
  values = list(groups.values()) + [summary[key] for key, _ in totals]
  return ["| " + " | ".join(list(groups) + [label for _, label in totals]) + " |",
          "|" + "---|" * (len(groups) + len(totals)),
          "| " + " | ".join(pct(v) for v in values) + " |"]


def select_records(rows: list, max_records: int, sample: str,
                   seed: int) -> tuple[list, dict[str, Any] | None]:
  """At most `max_records` records of a file, for a first try: its first ones, or a seeded
  random sample kept in file order; and what a report says of the choice (None: all)."""
  if max_records <= 0 or max_records >= len(rows):
    return rows, None
  if sample == "first":
    chosen, how = list(range(max_records)), "the first"
  else:
    chosen = sorted(np.random.default_rng(seed).choice(len(rows), max_records, replace=False))
    how = f"a random sample (seed {seed}) of"
  return [rows[i] for i in chosen], {"records": max_records, "of": len(rows), "how": how}


def readout_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """What every pairwise report adds: position consistency (the share of pairs whose
  verdict does not flip when A and B swap) and, for reasoning judges, each readout's
  accuracy and the judgments without a verdict."""
  measured = [r["consistent"] for r in rows if r["consistent"] is not None]
  summary = {"position_consistency": accuracy(measured)}
  slots = [r["p_first_slot"] for r in rows if "p_first_slot" in r]
  if slots:
    summary["p_first_slot"] = float(np.mean(slots))
  if rows and "verdict_correct" in rows[0]:
    summary.update(
        votes=rows[0]["votes"], orders=rows[0]["orders"],
        verdict_accuracy=accuracy([r["verdict_correct"] for r in rows]),
        voting_accuracy=accuracy([r["voting_correct"] for r in rows]),
        probability_accuracy=accuracy([r["probability_correct"] for r in rows]),
        judgments=sum(r["judgments"] for r in rows),
        no_verdict_judgments=sum(r["no_verdict"] for r in rows),
        tied_pairs=sum(r["tied"] for r in rows))
  return summary
