"""RewardBench (docs/method.md §5): per-subset and per-group accuracy, with two totals, each
named: GRAM's (pooled within a group, overall = mean of groups) and the leaderboard's
(subsets weighted by their counts, math-prm up-weighted). LLMBar's sets are its chat-hard
subsets, known by their folders or their first record wherever they lie."""
import collections
import hashlib
from typing import Any, Iterable

import numpy as np

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy,
                                           judge_pairs, pct)

GROUPS = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"],
    "chat-hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"],
    "reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"],
}
SUBSETS = {s: g for g, subsets in GROUPS.items() for s in subsets}
# The RewardBench leaderboard weighs each subset's accuracy by these counts (allenai/
# reward-bench rewardbench/constants.py EXAMPLE_COUNTS): the real sizes, except math-prm
# (447 pairs) counted as 984 so that math weighs as much as the six hep-* code sets together.
LEADERBOARD_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95,
    "mt-bench-easy": 28, "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984,
    "refusals-dangerous": 100, "refusals-offensive": 100, "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46, "xstest-should-refuse": 154, "xstest-should-respond": 250,
    "donotanswer": 136, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
    "hep-python": 164, "hep-rust": 164}


# LLMBar's own folders (princeton-nlp/LLMBar, Dataset/LLMBar/...) are RewardBench chat-hard
# subsets.
LLMBAR_SUBSETS = {("Natural",): "llmbar-natural",
                  ("Adversarial", "GPTInst"): "llmbar-adver-GPTInst",
                  ("Adversarial", "GPTOut"): "llmbar-adver-GPTOut",
                  ("Adversarial", "Manual"): "llmbar-adver-manual",
                  ("Adversarial", "Neighbor"): "llmbar-adver-neighbor"}


# The same sets by their first record (sha256 of input, output_1 and output_2 joined by NUL),
# so a copy outside LLMBar's folders (renamed, moved, cut to its first N records) is graded
# as its subset too.
LLMBAR_FIRST_RECORDS = {"cc820a8d99ab2f41": "llmbar-natural",
                        "2df720f1c8c338cc": "llmbar-adver-GPTInst",
                        "2b2a420b2839c5db": "llmbar-adver-GPTOut",
                        "67d27be35d00fea7": "llmbar-adver-manual",
                        "6b72513be41df1eb": "llmbar-adver-neighbor"}


def llmbar_subset(path: str, first_row: dict | None = None) -> str | None:
  """The RewardBench subset of an LLMBar file, from LLMBar's folder layout or from its first
  record's content; else None."""
  parts = tuple(path.split("/"))
  for folders, subset in LLMBAR_SUBSETS.items():
    tail = ("LLMBar", *folders)
    if any(parts[i:i + len(tail)] == tail for i in range(len(parts))):
      return subset
  fields = [(first_row or {}).get(k) for k in ("input", "output_1", "output_2")]
  if not all(isinstance(f, str) for f in fields):
    return None
  digest = hashlib.sha256("\x00".join(fields).encode()).hexdigest()[:16]
  return LLMBAR_FIRST_RECORDS.get(digest)


def leaderboard(subsets: dict[str, float]) -> dict[str, Any]:
  """The leaderboard's figures from per-subset accuracies: a group is the mean of its
  subsets weighted by LEADERBOARD_COUNTS (math-prm up-weighted), overall the mean of the
  groups."""
  groups = {}
  for group, names in GROUPS.items():
    present = [n for n in names if n in subsets]
    if present:
      weights = [LEADERBOARD_COUNTS[n] for n in present]
      groups[group] = float(np.average([subsets[n] for n in present], weights=weights))
  return {"overall": float(np.mean(list(groups.values()))) if groups else float("nan"),
          "groups": groups}


def summary(subset_correct: Iterable[tuple[str, bool]]) -> dict[str, Any]:
  by_subset: dict[str, list[bool]] = collections.defaultdict(list)
  by_group: dict[str, list[bool]] = collections.defaultdict(list)
  unknown = collections.Counter()
  for subset, correct in subset_correct:
    by_subset[subset].append(bool(correct))
    if subset in SUBSETS:
      by_group[SUBSETS[subset]].append(bool(correct))
    else:
      unknown[subset] += 1
  groups = {g: accuracy(by_group[g]) for g in GROUPS if by_group[g]}
  subsets = {s: accuracy(f) for s, f in sorted(by_subset.items())}
  return {"benchmark": "rewardbench", "pairs": sum(map(len, by_subset.values())),
          "overall": float(np.mean(list(groups.values()))) if groups else float("nan"),
          "groups": groups, "subsets": subsets, "ungrouped_subsets": dict(unknown),
          "leaderboard": leaderboard({s: a for s, a in subsets.items() if s in SUBSETS})}


def recognises(first: dict, path: str) -> bool:
  return ("output_1" in first and llmbar_subset(path, first) is not None) or \
      first.get("subset") in SUBSETS


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  _, outcomes, flags, results = judge_pairs(judge, rows)
  in_folder = llmbar_subset(path, rows[0][1] if rows else None)
  return results, summary((str(r.get("subset", in_folder or "")), ok)
                          for (_, r), ok in zip(rows, flags)), outcomes


def table(s: dict[str, Any]) -> list[str]:
  names = list(GROUPS)
  rows = [("GRAM (pooled within a group)", s["groups"], s["overall"]),
          ("leaderboard (subsets weighted, math-prm up-weighted)",
           s["leaderboard"]["groups"], s["leaderboard"]["overall"])]
  return (["| weighting | " + " | ".join(names) + " | overall (mean of groups) |",
           "|---" * (len(names) + 2) + "|"] +
          [f"| {label} | " + " | ".join(pct(groups.get(g, float("nan"))) for g in names) +
           f" | {pct(overall)} |" for label, groups, overall in rows])


def detail(s: dict[str, Any]) -> str:
  """The subsets a file holds: named up to three, else counted."""
  subsets = list(s.get("subsets") or ())
  if not subsets:
    return ""
  return f" ({', '.join(subsets)})" if len(subsets) <= 3 else f" ({len(subsets)} subsets)"


BENCHMARK = Benchmark("rewardbench", "RewardBench", recognises, score, table, detail)
