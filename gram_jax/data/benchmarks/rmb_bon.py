"""RMB's best-of-n set: a group is right only when its best answer beats every loser;
grouped and summarised as RMB's pairwise set."""
from gram_jax.data import preference
from gram_jax.data.benchmarks import rmb
from gram_jax.data.benchmarks.base import (Benchmark, Judge, Rows, Scored, correct, readout,
                                           row_format)


def score(judge: Judge, rows: Rows, path: str) -> Scored:
  groups = [preference.parse_best_of_n(row, where) for where, row in rows]
  triples = [(g.prompt, g.best, loser) for g in groups for loser in g.losers]
  outcomes = judge(triples, None)
  results, subset_correct, start = [], [], 0
  for (where, row), group in zip(rows, groups):
    item = outcomes[start:start + len(group.losers)]
    start += len(group.losers)
    ok = all(correct(o) for o in item)
    subset_correct.append((rmb.subset_of(row, where), ok))
    results.append({**row, "score_best": [o["a"] for o in item],
                    "score_losers": [o["b"] for o in item], "correct": ok,
                    "readouts": [readout(o) for o in item]})
  return results, rmb.summary("rmb_bon", subset_correct), outcomes


BENCHMARK = Benchmark("rmb_bon", "RMB best-of-n",
                      lambda first, path: row_format(first) == "rmb_bon", score, rmb.table)
