"""Benchmarks as published, one module each: how its files are recognised, which pairs it
judges and in which order, how results are grouped and summarised, and its table.

REGISTRY lists them in detection order: a file is the first benchmark that recognises its
first record (most by the preference parser's name for the record's format). A new
benchmark is a module that builds a `Benchmark` and one line here.
"""
from typing import Any

from gram_jax.data.benchmarks import (hhh, judgebench, pairs, pandalm, rewardbench,
                                      rewardbench2, rmb, rmb_bon, rmbench)
from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, pct, readout_summary,
                                           select_records)
from gram_jax.errors import GramError

REGISTRY: list[Benchmark] = [
    rewardbench2.BENCHMARK,
    rmb_bon.BENCHMARK,
    rmb.BENCHMARK,
    pandalm.BENCHMARK,
    hhh.BENCHMARK,
    rmbench.BENCHMARK,
    judgebench.BENCHMARK,
    rewardbench.BENCHMARK,
    pairs.BENCHMARK,  # last: recognises every file
]
BENCHMARKS = tuple(b.name for b in REGISTRY)

__all__ = ["Benchmark", "Judge", "Rows", "Scored", "REGISTRY", "BENCHMARKS", "detect", "get",
           "heading", "markdown", "readout_summary", "select_records"]


def get(name: str) -> Benchmark:
  for benchmark in REGISTRY:
    if benchmark.name == name:
      return benchmark
  raise GramError(f"unknown benchmark {name!r} (known: {', '.join(b.name for b in REGISTRY)})")


def detect(rows: list[dict], setting: str, path: str = "") -> Benchmark:
  """The benchmark a file's records come from, by their fields (`setting` when not auto)."""
  if setting != "auto":
    return get(setting)
  first = rows[0] if rows else {}
  return next(b for b in REGISTRY if b.recognises(first, path))


def heading(name: str, summary: dict[str, Any]) -> str:
  """`file: benchmark (subsets), counts`, and how the records were chosen when not all were."""
  benchmark = get(summary["benchmark"])
  n, unit = (summary["items"], "item") if "items" in summary else (summary["pairs"], "pair")
  count = f"{n} {unit}{'' if n == 1 else 's'}"
  sample = summary.get("sample")
  if sample:
    count += f"; {sample['how']} {sample['records']} of the file's {sample['of']} records"
  return f"{name}: {benchmark.title}{benchmark.detail(summary)}, {count}"


def markdown(name: str, summary: dict[str, Any]) -> str:
  """A small Markdown report of one file's summary: the benchmark and its counts, its
  table, the judge and protocol that produced them, and how many pairs were cut."""
  lines = [f"### {heading(name, summary)}", ""] + get(summary["benchmark"]).table(summary)
  lines.append("")
  if "judge" in summary:
    lines.append(f"Judge: {summary['judge']}.")
  consistency = summary.get("position_consistency")
  if consistency is not None:
    lines.append("Position consistency (verdict unchanged when A and B swap): " + (
        f"{pct(consistency)}." if consistency == consistency else
        "not measured (each pair was judged in one order)."))
  if "voting_accuracy" in summary:
    tie = ("went to the response shown first" if summary["orders"] == 1 else "counted wrong")
    single = "one judgment" if summary["orders"] == 1 else "one judgment per order"
    lines.append(
        f"Readouts: parsed verdict, {single} {pct(summary['verdict_accuracy'])}; "
        f"voting@{summary['votes']} {pct(summary['voting_accuracy'])}; P(A)/P(B) after the "
        f"rationale {pct(summary['probability_accuracy'])}. No verdict in "
        f"{summary['no_verdict_judgments']} of {summary['judgments']} judgments; "
        f"{summary['tied_pairs']} pairs tied ({tie}).")
  budget = f" of {summary['max_len']} tokens" if "max_len" in summary else ""
  lines += [f"Pairs trimmed to fit the prompt budget{budget}: {summary['trimmed_pairs']}.", ""]
  return "\n".join(lines)
