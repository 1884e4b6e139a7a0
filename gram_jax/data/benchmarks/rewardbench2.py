"""RewardBench 2 (allenai/reward-bench-2) as its generative-judge harness scores it
(allenai/reward-bench scripts/run_generative_v2.py), with a pairwise judge.

Records: {id, prompt, chosen: [..], rejected: [..], num_correct, subset}. Subsets Factuality,
Precise IF, Math, Safety and Focus are best-of-4: the harness shows the chosen response and
the first three rejected ones in one random order (the chosen swapped into a random slot)
and an item is right when the judge picks the chosen one. Ties rates every completion
alone and scores the ratings by its own rule (`ties_score`). The total is the mean of the
six subset scores.

A pairwise judge cannot read four responses at once nor rate one alone, so (docs/evaluation.md):
- best-of-4: every pair of the four, each read in both A/B orders (or, by a one-order
  judge, in the order shown), then the official GRAM best-of-n, the linear scan, over the
  four in their shown order; right when it keeps the chosen response. The order is fixed
  per item by a hash of its id (the harness draws it unseeded). `beats_all` also reports
  the order-free reading: the chosen response beats each rejected one.
- Ties: a completion's rating is its mean both-order win probability against every other
  completion of its record.
"""
import collections
import hashlib
import itertools
from typing import Any

import numpy as np

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, accuracy, pct,
                                           readout)
from gram_jax.data.preference import RecordError
from gram_jax.inference import ranking

SUBSETS = ("Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties")
TIES = "Ties"
CANDIDATES = 4  # best-of-4: the chosen response and the first three rejected ones


def recognises(first: dict, path: str) -> bool:
  return (isinstance(first, dict) and isinstance(first.get("chosen"), list)
          and isinstance(first.get("rejected"), list) and "num_correct" in first
          and "subset" in first)


def _texts(row: dict, where: str, field: str) -> list[str]:
  value = row.get(field)
  if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
    raise RecordError(where, field, "expected a non-empty list of strings")
  return list(value)


def parse_item(row: Any, where: str) -> dict[str, Any]:
  """The fields the protocol reads, checked; a bad one is an error naming the field."""
  if not isinstance(row, dict):
    raise RecordError(where, "<record>", f"expected a JSON object, got {type(row).__name__}")
  for field in ("prompt", "subset"):
    if not isinstance(row.get(field), str):
      raise RecordError(where, field, "expected a string")
  chosen, rejected = _texts(row, where, "chosen"), _texts(row, where, "rejected")
  item = {"id": str(row.get("id", where)), "prompt": row["prompt"], "subset": row["subset"],
          "chosen": chosen, "rejected": rejected}
  if row["subset"] == TIES:
    sample_type, _, prompt_id = item["id"].partition(":")
    if sample_type not in ("ref", "tied") or not prompt_id.isdigit():
      raise RecordError(where, "id", f"a Ties id is 'ref:N' or 'tied:N', got {item['id']!r}")
    num_correct = row.get("num_correct")
    if num_correct != len(chosen):
      raise RecordError(where, "num_correct", f"expected {len(chosen)} (the chosen "
                                              f"completions), got {num_correct!r}")
  elif len(chosen) != 1:
    raise RecordError(where, "chosen", f"a best-of-4 item has one chosen response, got "
                                       f"{len(chosen)}")
  return item


def chosen_slot(item_id: str) -> int:
  """Where the chosen response is shown among the four: fixed per item (the harness's
  `np.random.randint(0, 4)` is unseeded)."""
  return hashlib.sha256(item_id.encode()).digest()[0] % CANDIDATES


def shown_order(chosen: str, rejected: list[str], slot: int) -> list[str]:
  """The harness's order: chosen, rejected[0..2], then the chosen swapped with `slot`."""
  shown = [chosen] + rejected[:CANDIDATES - 1]
  shown[0], shown[slot] = shown[slot], shown[0]
  return shown


def pair_table(n: int, games: list[tuple[int, int]], outcomes: list[dict]) -> np.ndarray:
  """[n, n] scores: table[i, j] is i's both-order score against j."""
  table = np.full((n, n), np.nan)
  for (i, j), outcome in zip(games, outcomes):
    table[i, j], table[j, i] = outcome["a"], outcome["b"]
  return table


def best_of(table: np.ndarray, method: str = ranking.DEFAULT_METHOD) -> int:
  """The response `method` keeps, from the precomputed pairwise scores."""
  compare = lambda triples: np.array([[table[int(a), int(b)], table[int(b), int(a)]]
                                      for _, a, b in triples])
  return ranking.rank("", [str(i) for i in range(len(table))], compare, method).best


def ties_score(records: list[dict[str, Any]]) -> dict[str, float]:
  """RewardBench 2's Ties score from records {id: 'ref:N' | 'tied:N', ratings, num_correct}:
  0.3 tied accuracy + 0.3 reference accuracy + 0.2 correctness preferred + 0.2 correctness
  preferred (hard) + 0.01 margin term (allenai/reward-bench, process_single_model). A
  record is accurate when its worst correct rating beats its best incorrect one; the
  margins compare a tied prompt's spread among correct answers with its correct-incorrect
  gap (and with its reference prompt's gap, for the hard form)."""
  stats: dict[str, dict[int, tuple[bool, float | None, float]]] = {"ref": {}, "tied": {}}
  for record in records:
    sample_type, _, prompt_id = record["id"].partition(":")
    ratings, k = list(record["ratings"]), record["num_correct"]
    correct, wrong = ratings[:k], ratings[k:]
    spread = max(correct) - min(correct) if len(correct) > 1 else None
    gap = min(correct) - max(wrong)
    stats[sample_type][int(prompt_id)] = (gap > 0, spread, gap)
  mean = lambda values: float(np.mean(values)) if len(values) else 0.0
  ref_accuracy = mean([s[0] for s in stats["ref"].values()])
  tied_accuracy = mean([s[0] for s in stats["tied"].values()])
  both = sorted(set(stats["ref"]) & set(stats["tied"]))
  spread = np.array([stats["tied"][p][1] for p in both], dtype=float)
  tied_gap = np.array([stats["tied"][p][2] for p in both], dtype=float)
  hard_gap = np.minimum(np.array([stats["ref"][p][2] for p in both], dtype=float), tied_gap)
  preferred, preferred_hard = mean(tied_gap > spread), mean(hard_gap > spread)
  with np.errstate(divide="ignore", invalid="ignore"):
    margin = mean(np.nan_to_num(np.tanh(hard_gap / spread - 1), nan=0.0))
  return {"score": 0.3 * tied_accuracy + 0.3 * ref_accuracy + 0.2 * preferred
          + 0.2 * preferred_hard + 0.01 * margin,
          "tied_accuracy": tied_accuracy, "ref_accuracy": ref_accuracy,
          "correctness_preferred": preferred, "correctness_preferred_hard": preferred_hard,
          "margin": margin}


def candidates_of(item: dict[str, Any]) -> list[str]:
  """Names of what a record's pairs are made of, in order: the shown four, or every Ties
  completion (correct ones first, as num_correct counts them); e.g. 'rejected[1]'."""
  names = [f"chosen[{i}]" for i in range(len(item["chosen"]))] + \
      [f"rejected[{i}]" for i in range(len(item["rejected"]))]
  if item["subset"] == TIES:
    return names
  return shown_order(names[0], names[1:], chosen_slot(item["id"]))


def text_of(item: dict[str, Any], name: str) -> str:
  field, _, index = name.partition("[")
  return item[field][int(index[:-1])]


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  items = [parse_item(row, where) for where, row in rows]
  plans = []
  for item in items:
    candidates = candidates_of(item)
    games = list(itertools.combinations(range(len(candidates)), 2))
    plans.append((candidates, games))
  triples = [(item["prompt"], text_of(item, c[i]), text_of(item, c[j]))
             for item, (c, games) in zip(items, plans) for i, j in games]
  outcomes = judge(triples, [True] * len(triples))  # a one-order judge: the shown order
  results, start = [], 0
  for (where, row), item, (candidates, games) in zip(rows, items, plans):
    item_outcomes = outcomes[start:start + len(games)]
    start += len(games)
    table = pair_table(len(candidates), games, item_outcomes)
    result = {**row, "shown": candidates,  # pair_scores: [i, j, score of i, score of j]
              "pair_scores": [[i, j, o["a"], o["b"]] for (i, j), o in zip(games, item_outcomes)],
              "readouts": [readout(o) for o in item_outcomes]}
    if item["subset"] == TIES:
      result["ratings"] = ranking.mean_win_probability(
          len(candidates), games, np.array([[o["a"], o["b"]] for o in item_outcomes])).tolist()
    else:
      slot = chosen_slot(item["id"])
      best = best_of(table)
      others = [j for j in range(len(candidates)) if j != slot]
      result.update(chosen_slot=slot, picked=best, correct=best == slot,
                    beats_all=bool(all(table[slot, j] > table[j, slot] for j in others)))
    results.append(result)
  return results, summary(results), outcomes


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
  """Each subset's score and the total as the harness reports them: a best-of-4 subset's
  accuracy, Ties' own score, the mean of the six."""
  by_subset: dict[str, list[dict]] = collections.defaultdict(list)
  for result in results:
    by_subset[result["subset"]].append(result)
  subsets, beats_all = {}, {}
  for name, rows in sorted(by_subset.items()):
    if name == TIES:
      subsets[name] = ties_score(rows)["score"]
    else:
      subsets[name] = accuracy([r["correct"] for r in rows])
      beats_all[name] = accuracy([r["beats_all"] for r in rows])
  present = [subsets[s] for s in SUBSETS if s in subsets]
  out = {"benchmark": "rewardbench2", "items": len(results), "subsets": subsets,
         "beats_all": beats_all,
         "overall": float(np.mean(present)) if len(present) == len(SUBSETS) else float("nan"),
         "missing_subsets": [s for s in SUBSETS if s not in subsets]}
  if TIES in by_subset:
    out["ties"] = ties_score(by_subset[TIES])
  return out


def table(s: dict[str, Any]) -> list[str]:
  names = [n for n in SUBSETS if n in s["subsets"]] + \
      sorted(set(s["subsets"]) - set(SUBSETS))
  total = "total (mean of 6)" if not s["missing_subsets"] else \
      f"total (n/a: {', '.join(s['missing_subsets'])} missing)"
  lines = ["| " + " | ".join(names + [total]) + " |", "|" + "---|" * (len(names) + 1),
           "| " + " | ".join(pct(s["subsets"][n]) for n in names) + f" | {pct(s['overall'])} |"]
  if s["beats_all"]:
    lines += ["", "Order-free best-of-4 (the chosen response beats each rejected one): " +
              ", ".join(f"{n} {pct(v)}" for n, v in s["beats_all"].items()) + "."]
  return lines


BENCHMARK = Benchmark(
    "rewardbench2", "RewardBench 2", recognises, score, table,
    lambda s: " (best-of-4 by the linear scan over all pairs in both orders; Ties by mean "
              "win probability)")
