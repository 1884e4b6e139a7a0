"""Official grouping rules of RewardBench, JudgeBench and RM-Bench (SPEC.md section 5).

Each summary takes per-pair (or per-item) correctness and returns a JSON-able dict; the
Markdown table is rendered from the same dict.
"""
import collections
from typing import Any, Iterable

import numpy as np

REWARDBENCH_GROUPS = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"],
    "chat-hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"],
    "reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"],
}
REWARDBENCH_SUBSETS = {s: g for g, subsets in REWARDBENCH_GROUPS.items() for s in subsets}
JUDGEBENCH_GROUPS = {"Knowledge": "mmlu-pro", "Reasoning": "livebench-reasoning",
                     "Math": "livebench-math", "Coding": "livecodebench"}
RMBENCH_DOMAINS = ("chat", "code", "math", "safety")


def _accuracy(flags: list[bool]) -> float:
  return float(np.mean(flags)) if flags else float("nan")


def pairs_summary(correct: Iterable[bool]) -> dict[str, Any]:
  flags = list(correct)
  return {"benchmark": "pairs", "pairs": len(flags), "accuracy": _accuracy(flags)}


def rewardbench_summary(subset_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  """Per-subset and per-group accuracy (pooled within a group); overall = mean of groups."""
  by_subset: dict[str, list[bool]] = collections.defaultdict(list)
  by_group: dict[str, list[bool]] = collections.defaultdict(list)
  unknown = collections.Counter()
  for subset, correct in subset_correct:
    by_subset[subset].append(bool(correct))
    if subset in REWARDBENCH_SUBSETS:
      by_group[REWARDBENCH_SUBSETS[subset]].append(bool(correct))
    else:
      unknown[subset] += 1
  groups = {g: _accuracy(by_group[g]) for g in REWARDBENCH_GROUPS if by_group[g]}
  return {"benchmark": "rewardbench", "pairs": sum(map(len, by_subset.values())),
          "overall": float(np.mean(list(groups.values()))) if groups else float("nan"),
          "groups": groups, "subsets": {s: _accuracy(f) for s, f in sorted(by_subset.items())},
          "ungrouped_subsets": dict(unknown)}


def judgebench_group(source: str) -> str | None:
  for group, key in JUDGEBENCH_GROUPS.items():
    if key in source:
      return group
  return None


def judgebench_summary(source_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  """Accuracy per group (source substring) and over all pairs."""
  by_group: dict[str, list[bool]] = collections.defaultdict(list)
  flags = []
  for source, correct in source_correct:
    flags.append(bool(correct))
    by_group[judgebench_group(source) or "Other"].append(bool(correct))
  return {"benchmark": "judgebench", "pairs": len(flags), "overall": _accuracy(flags),
          "groups": {g: _accuracy(f) for g, f in by_group.items()}}


def rmbench_item_accuracy(matrix: np.ndarray) -> dict[str, float]:
  """matrix[i, j] = chosen variant i beats rejected variant j (0 concise, 1 detailed plain,
  2 detailed markdown). hard: upper triangle (chosen less fancy), easy: lower, normal: diag."""
  matrix = np.asarray(matrix, float)
  upper, lower = np.triu_indices(3, 1), np.tril_indices(3, -1)
  return {"hard": float(matrix[upper].mean()), "normal": float(np.diag(matrix).mean()),
          "easy": float(matrix[lower].mean()), "avg": float(matrix.mean())}


def rmbench_summary(domain_matrices: Iterable[tuple[str, np.ndarray]]) -> dict[str, Any]:
  """Per domain: hard / normal / easy / avg over its items; overall: the same over all items,
  with avg = mean of the domain averages (RM-Bench's total average)."""
  per_domain: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
  for domain, matrix in domain_matrices:
    per_domain[domain].append(rmbench_item_accuracy(matrix))
  mean = lambda rows, key: float(np.mean([r[key] for r in rows]))
  domains = {d: {k: mean(rows, k) for k in ("hard", "normal", "easy", "avg")} | {
      "items": len(rows)} for d, rows in per_domain.items()}
  every = [r for rows in per_domain.values() for r in rows]
  overall = {k: mean(every, k) for k in ("hard", "normal", "easy")} if every else {}
  overall["avg"] = float(np.mean([d["avg"] for d in domains.values()])) if domains else float(
      "nan")
  return {"benchmark": "rmbench", "items": len(every), "overall": overall, "domains": domains}


def markdown(name: str, summary: dict[str, Any], trimmed: int) -> str:
  """A small Markdown report of one file's summary."""
  kind = summary["benchmark"]
  lines = [f"### {name} ({kind})", ""]
  pct = lambda x: "n/a" if x != x else f"{100 * x:.1f}"
  if kind == "pairs":
    lines += ["| pairs | accuracy |", "|---|---|",
              f"| {summary['pairs']} | {pct(summary['accuracy'])} |"]
  elif kind in ("rewardbench", "judgebench"):
    groups = summary["groups"]
    lines += ["| " + " | ".join(list(groups) + ["overall"]) + " |",
              "|" + "---|" * (len(groups) + 1),
              "| " + " | ".join(pct(v) for v in list(groups.values()) + [summary["overall"]])
              + " |"]
  else:
    lines += ["| domain | items | hard | normal | easy | avg |", "|---|---|---|---|---|---|"]
    for domain, row in summary["domains"].items():
      lines.append(f"| {domain} | {row['items']} | {pct(row['hard'])} | {pct(row['normal'])} "
                   f"| {pct(row['easy'])} | {pct(row['avg'])} |")
    o = summary["overall"]
    lines.append(f"| overall | {summary['items']} | {pct(o.get('hard', float('nan')))} | "
                 f"{pct(o.get('normal', float('nan')))} | {pct(o.get('easy', float('nan')))} | "
                 f"{pct(o['avg'])} |")
  lines += ["", f"Pairs trimmed to fit the length budget: {trimmed}.", ""]
  return "\n".join(lines)
