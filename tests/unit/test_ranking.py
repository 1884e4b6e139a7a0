"""Ranking methods on judges whose every pairwise outcome is known by construction."""
import numpy as np
import pytest

from gram_jax import GramError
from gram_jax.inference import ranking


def judge_from(table: dict[tuple[str, str], float]):
  """A compare() whose score of x against y is table[(x, y)] (and 1 - that for y)."""
  calls = []
  def compare(triples):
    calls.append(len(triples))
    out = []
    for _, x, y in triples:
      p = table[(x, y)] if (x, y) in table else 1 - table[(y, x)]
      out.append((p, 1 - p))
    return np.array(out)
  return compare, calls


# x narrowly beats both others; y crushes z. Summed probabilities would put y first
# (0.49 + 0.99 = 1.48 against x's 1.02); x wins two games, y one, z none.
NARROW = {("x", "y"): 0.51, ("x", "z"): 0.51, ("y", "z"): 0.99}


def test_round_robin_orders_by_wins_not_summed_probabilities():
  compare, calls = judge_from(NARROW)
  result = ranking.rank("q", ["y", "x", "z"], compare, "round_robin")
  assert result.order == [1, 0, 2] and result.best == 1
  assert result.scores == [1.0, 2.0, 0.0] and result.comparisons == 3 and calls == [3]


def test_a_tied_game_is_half_a_win_each():
  compare, _ = judge_from({("a", "b"): 0.5, ("a", "c"): 1.0, ("b", "c"): 1.0})
  assert ranking.rank("q", ["a", "b", "c"], compare, "round_robin").scores == [1.5, 1.5, 0.0]


def test_bradley_terry_recovers_the_strengths_that_made_the_outcomes():
  strengths = np.array([4.0, 1.0, 2.0, 0.5])
  names = ["s0", "s1", "s2", "s3"]
  table = {(names[i], names[j]): strengths[i] / (strengths[i] + strengths[j])
           for i in range(4) for j in range(i + 1, 4)}
  compare, _ = judge_from(table)
  result = ranking.rank("q", names, compare, "bradley_terry")
  assert result.order == [0, 2, 1, 3]
  games = ranking.all_games(4)
  fitted = ranking.bradley_terry_strengths(4, games, compare([("q", names[i], names[j])
                                                              for i, j in games]), prior=0.0)
  expected = np.log(strengths) - np.log(strengths).mean()
  np.testing.assert_allclose(fitted, expected, atol=1e-6)


def test_bradley_terry_stays_finite_for_an_unbeaten_response():
  compare, _ = judge_from({("a", "b"): 1.0, ("a", "c"): 1.0, ("b", "c"): 1.0})
  result = ranking.rank("q", ["c", "a", "b"], compare, "bradley_terry")
  assert result.order == [1, 2, 0] and np.isfinite(result.scores).all()


def test_linear_scan_keeps_the_current_best_unless_beaten():
  # a vs b: b wins (0.3); b vs c: tie (0.5) so b stays; b vs d: d wins (0.4).
  compare, calls = judge_from({("a", "b"): 0.3, ("b", "c"): 0.5, ("b", "d"): 0.4})
  result = ranking.rank("q", ["a", "b", "c", "d"], compare, "linear")
  assert result.best == 3 and result.comparisons == 3 and calls == [1, 1, 1]


def test_knockout_plays_rounds_in_batches_with_a_bye():
  # round 1: (a, b) -> a, (c, d) -> d, e has a bye; round 2: (a, d) -> d, e bye;
  # round 3: (d, e) -> e.
  compare, calls = judge_from({("a", "b"): 0.9, ("c", "d"): 0.2, ("a", "d"): 0.1,
                               ("d", "e"): 0.3})
  result = ranking.rank("q", ["a", "b", "c", "d", "e"], compare, "knockout")
  assert result.best == 4 and calls == [2, 1, 1] and result.comparisons == 4


def test_one_response_and_unknown_methods():
  compare, calls = judge_from({})
  for method in ranking.METHODS:
    assert ranking.rank("q", ["only"], compare, method).best == 0
  assert calls == []
  with pytest.raises(GramError, match="unknown rank method"):
    ranking.rank("q", ["a"], compare, "bogus")
  with pytest.raises(GramError, match="at least one response"):
    ranking.rank("q", [], compare)


def test_group_games_all_pairs_and_neighbours():
  assert ranking.group_games(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
  games = ranking.group_games(8, "neighbours", opponents=2)
  assert games == [(i, (i + d) % 8) for i in range(8) for d in (1, 2)]
  assert len({frozenset(g) for g in games}) == 16  # no pair twice
  played = [sum(i in g for g in games) for i in range(8)]
  assert played == [4] * 8
  assert ranking.group_games(5, "neighbours", opponents=2) == ranking.group_games(5)


def test_mean_win_probability_of_a_group():
  games = [(0, 1), (0, 2), (1, 2)]
  results = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
  np.testing.assert_allclose(ranking.mean_win_probability(3, games, results),
                             [(0.9 + 0.6) / 2, (0.1 + 0.3) / 2, (0.4 + 0.7) / 2])
  np.testing.assert_allclose(ranking.mean_win_probability(1, [], np.zeros((0, 2))), [0.5])


def test_comparisons_per_method():
  assert ranking.comparisons(256, "round_robin") == 32_640
  assert ranking.comparisons(256, "knockout") == ranking.comparisons(256, "linear") == 255
