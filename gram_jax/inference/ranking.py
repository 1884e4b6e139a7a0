"""Best-of-n and total orders from pairwise judgments (docs/method.md §4).

`compare(triples)` scores (prompt, a, b) triples as an [N, 2] array; a beats b iff its
score is higher. Methods:
- linear: the official scan, n - 1 comparisons; the current best stays unless a
  challenger scores strictly higher.
- knockout: a bracket, one batch a round, n - 1 comparisons; the odd one out gets a bye.
- round_robin: every pair once; ordered by wins (a tied game is half a win to each), equal
  wins in list order. Wins, not summed probabilities: a response that narrowly beats every
  other ranks above one that wins big against some and loses to it.
- bradley_terry: every pair once; ordered by Bradley–Terry strengths fitted to the
  pairwise scores as soft outcomes.

Group rewards (GRPO): each completion's mean both-order win probability over its games in the
group; `all_pairs` plays every pair, `neighbours` each completion against the next k around a
circle (n * k games instead of n(n-1)/2, every completion plays 2k).
"""
import dataclasses
import itertools
from typing import Callable, Sequence

import numpy as np

from gram_jax.errors import GramError

METHODS = ("linear", "knockout", "round_robin", "bradley_terry")
DEFAULT_METHOD = "linear"  # the official best-of-n: the scan, n - 1 comparisons
GROUP_METHODS = ("all_pairs", "neighbours")
Compare = Callable[[list[tuple[str, str, str]]], np.ndarray]


@dataclasses.dataclass
class RankResult:
  best: int  # index of the best response
  order: list[int]  # best first: every response (round robin, Bradley–Terry) or the best only
  scores: list[float]  # what the decision used: last pairwise score, wins or log-strength
  comparisons: int


def rank(prompt: str, responses: Sequence[str], compare: Compare,
         method: str = DEFAULT_METHOD) -> RankResult:
  if not responses:
    raise GramError("rank needs at least one response")
  if method not in METHODS:
    raise GramError(f"unknown rank method {method!r} ({', '.join(METHODS)})")
  return {"linear": linear, "knockout": knockout, "round_robin": round_robin,
          "bradley_terry": bradley_terry}[method](prompt, responses, compare)


def linear(prompt: str, responses: Sequence[str], compare: Compare) -> RankResult:
  best, scores = 0, [0.0] * len(responses)
  for challenger in range(1, len(responses)):
    (keep, new), = compare([(prompt, responses[best], responses[challenger])])
    scores[best], scores[challenger] = float(keep), float(new)
    if new > keep:
      best = challenger
  return RankResult(best, [best], scores, len(responses) - 1)


def knockout(prompt: str, responses: Sequence[str], compare: Compare) -> RankResult:
  alive, scores, calls = list(range(len(responses))), [0.0] * len(responses), 0
  while len(alive) > 1:
    games = list(zip(alive[0::2], alive[1::2]))
    results = compare([(prompt, responses[i], responses[j]) for i, j in games])
    calls += len(games)
    winners = []
    for (i, j), (si, sj) in zip(games, results):
      scores[i], scores[j] = float(si), float(sj)
      winners.append(j if sj > si else i)
    alive = winners + ([alive[-1]] if len(alive) % 2 else [])
  return RankResult(alive[0], [alive[0]], scores, calls)


def all_games(n: int) -> list[tuple[int, int]]:
  return list(itertools.combinations(range(n), 2))


def comparisons(n: int, method: str) -> int:
  """Pairs a ranking of n responses by `method` scores (the server's per-request cap)."""
  return n * (n - 1) // 2 if method in ("round_robin", "bradley_terry") else max(n - 1, 0)


def group_games(n: int, method: str = "all_pairs", opponents: int = 4) -> list[tuple[int, int]]:
  """The games of a group reward: every pair, or each of n completions against the next
  `opponents` around a circle (every pair at most once)."""
  if method not in GROUP_METHODS:
    raise GramError(f"unknown group method {method!r} ({', '.join(GROUP_METHODS)})")
  if method == "all_pairs" or 2 * opponents >= n - 1:
    return all_games(n)
  return [(i, (i + step) % n) for i in range(n) for step in range(1, opponents + 1)]


def mean_win_probability(n: int, games: Sequence[tuple[int, int]],
                         results: np.ndarray) -> np.ndarray:
  """Each of n completions' mean score over its games; 0.5 for one that played none."""
  total, played = np.zeros(n), np.zeros(n)
  for (i, j), (si, sj) in zip(games, results):
    total[i] += si
    total[j] += sj
    played[i] += 1
    played[j] += 1
  return np.where(played > 0, total / np.maximum(played, 1), 0.5)


def win_counts(n: int, games: Sequence[tuple[int, int]], results: np.ndarray) -> np.ndarray:
  """Wins of each of n players; a game whose two scores are equal is half a win each."""
  wins = np.zeros(n)
  for (i, j), (si, sj) in zip(games, results):
    if si == sj:
      wins[i] += 0.5
      wins[j] += 0.5
    else:
      wins[i if si > sj else j] += 1
  return wins


def bradley_terry_strengths(n: int, games: Sequence[tuple[int, int]], results: np.ndarray,
                            prior: float = 0.01, iterations: int = 1000) -> np.ndarray:
  """Log-strengths (mean 0) of the Bradley–Terry model fitted by minorise-maximise
  (Hunter 2004) to soft outcomes: i's outcome against j is s_i / (s_i + s_j). `prior` is a
  pseudo-outcome added to both sides of every game so an unbeaten player stays finite."""
  outcome = np.zeros((n, n))
  played = np.zeros((n, n))
  for (i, j), (si, sj) in zip(games, results):
    share = si / (si + sj) if si + sj > 0 else 0.5
    outcome[i, j] += share + prior
    outcome[j, i] += 1 - share + prior
    played[i, j] += 1 + 2 * prior
    played[j, i] += 1 + 2 * prior
  wins = outcome.sum(axis=1)
  strength = np.ones(n)
  for _ in range(iterations):
    denominator = (played / (strength[:, None] + strength[None, :])).sum(axis=1)
    updated = np.where(denominator > 0, wins / np.maximum(denominator, 1e-300), strength)
    updated /= np.exp(np.mean(np.log(np.maximum(updated, 1e-300))))
    if np.allclose(updated, strength, rtol=1e-12, atol=0):
      strength = updated
      break
    strength = updated
  log_strength = np.log(np.maximum(strength, 1e-300))
  return log_strength - log_strength.mean()


def _order(values: np.ndarray) -> list[int]:
  return [int(i) for i in np.argsort(-values, kind="stable")]


def round_robin(prompt: str, responses: Sequence[str], compare: Compare) -> RankResult:
  games = all_games(len(responses))
  results = compare([(prompt, responses[i], responses[j]) for i, j in games]) if games else []
  wins = win_counts(len(responses), games, results)
  order = _order(wins)
  return RankResult(order[0], order, wins.tolist(), len(games))


def bradley_terry(prompt: str, responses: Sequence[str], compare: Compare) -> RankResult:
  games = all_games(len(responses))
  results = compare([(prompt, responses[i], responses[j]) for i, j in games]) if games else []
  strengths = bradley_terry_strengths(len(responses), games, np.asarray(results))
  order = _order(strengths)
  return RankResult(order[0], order, strengths.tolist(), len(games))
