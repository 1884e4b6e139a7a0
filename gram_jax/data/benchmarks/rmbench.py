"""RM-Bench (docs/method.md §5): every item's 3 x 3 (chosen variant, rejected variant) pairs;
hard / normal / easy / avg per domain (safety-* merged into safety), overall = each averaged
over the domains (RM-Bench's total)."""
import collections
import os
from typing import Any, Iterable

import numpy as np

from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, correct, pct,
                                           readout, row_format)
from gram_jax.errors import GramError

DOMAINS = ("chat", "math", "code", "safety")


def domain(name: str) -> str:
  """RM-Bench scores safety-refuse and safety-response as one 'safety' domain."""
  return "safety" if name.startswith("safety") else name


def item_accuracy(matrix: np.ndarray) -> dict[str, float]:
  """matrix[i, j] = chosen variant i beats rejected variant j (0 concise, 1 detailed plain,
  2 detailed markdown). hard: upper triangle (chosen less fancy), easy: lower, normal: diag."""
  matrix = np.asarray(matrix, float)
  upper, lower = np.triu_indices(3, 1), np.tril_indices(3, -1)
  return {"hard": float(matrix[upper].mean()), "normal": float(np.diag(matrix).mean()),
          "easy": float(matrix[lower].mean()), "avg": float(matrix.mean())}


def summary(domain_matrices: Iterable[tuple[str, np.ndarray]]) -> dict[str, Any]:
  per_domain: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
  for name, matrix in domain_matrices:
    per_domain[domain(name)].append(item_accuracy(matrix))
  mean = lambda rows, key: float(np.mean([r[key] for r in rows]))
  order = sorted(per_domain, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS),
                                            d))
  domains = {d: {k: mean(per_domain[d], k) for k in ("hard", "normal", "easy", "avg")} | {
      "items": len(per_domain[d])} for d in order}
  overall = {k: float(np.mean([d[k] for d in domains.values()])) if domains else float("nan")
             for k in ("hard", "normal", "easy", "avg")}
  return {"benchmark": "rmbench", "items": sum(len(r) for r in per_domain.values()),
          "overall": overall, "domains": domains}


def record_domain(row: dict, path: str) -> str:
  """An RM-Bench record's domain: its own field, else its file's or id's name."""
  if isinstance(row.get("domain"), str):
    return row["domain"]
  name = os.path.basename(path).lower()
  for candidate in DOMAINS:
    if candidate in name or str(row.get("id", "")).lower().startswith(candidate):
      return candidate
  return "unknown"


def triples(where: str, row: dict) -> list[tuple[str, str, str]]:
  """The 9 (prompt, chosen, rejected) pairs of an RM-Bench item, chosen i by rejected j."""
  chosen, rejected = row.get("chosen"), row.get("rejected")
  for field, value in (("chosen", chosen), ("rejected", rejected)):
    if not (isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, str) and v.strip() for v in value)):
      raise GramError(f"{where}: field '{field}': expected 3 non-empty response strings")
  if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
    raise GramError(f"{where}: field 'prompt': missing or empty")
  return [(row["prompt"], chosen[i], rejected[j]) for i in range(3) for j in range(3)]


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  outcomes = judge([t for where, row in rows for t in triples(where, row)], None)
  results, matrices = [], []
  for index, (_, row) in enumerate(rows):
    item = outcomes[9 * index:9 * index + 9]
    chosen = np.array([o["a"] for o in item]).reshape(3, 3)
    rejected = np.array([o["b"] for o in item]).reshape(3, 3)
    wins = np.array([correct(o) for o in item]).reshape(3, 3)
    matrices.append((record_domain(row, path), wins))
    results.append({**row, "score_chosen": chosen.tolist(), "score_rejected": rejected.tolist(),
                    "correct": wins.tolist(), **item_accuracy(wins),
                    "readouts": [readout(o) for o in item]})
  return results, summary(matrices), outcomes


def table(s: dict[str, Any]) -> list[str]:
  lines = ["| domain | items | hard | normal | easy | avg |", "|---|---|---|---|---|---|"]
  for name, row in s["domains"].items():
    lines.append(f"| {name} | {row['items']} | {pct(row['hard'])} | {pct(row['normal'])} "
                 f"| {pct(row['easy'])} | {pct(row['avg'])} |")
  o = s["overall"]
  lines.append(f"| overall (mean of domains) | {s['items']} | {pct(o['hard'])} | "
               f"{pct(o['normal'])} | {pct(o['easy'])} | {pct(o['avg'])} |")
  return lines


BENCHMARK = Benchmark("rmbench", "RM-Bench", lambda first, path: row_format(first) == "rmbench",
                      score, table)
