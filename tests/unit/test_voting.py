"""Majority votes over judgments of both orders, on hand-counted cases."""
import pytest

from gram_jax.inference import voting
from gram_jax.inference.voting import Vote


def test_a_verdict_written_with_the_responses_swapped_points_back():
  assert voting.oriented("A", swapped=False) == 0 and voting.oriented("B", swapped=False) == 1
  assert voting.oriented("A", swapped=True) == 1 and voting.oriented("B", swapped=True) == 0
  assert voting.oriented(None, swapped=True) is None
  assert voting.oriented("C", swapped=False) is None  # not a label: no verdict
  assert voting.oriented("2", swapped=True, labels=("1", "2")) == 0


def test_majority_share_and_scores():
  # 2k = 6 judgments: order 1 says A, A, B; order 2 (swapped) says B, B, nothing.
  picks = [voting.oriented(v, s) for v, s in [("A", False), ("A", False), ("B", False),
                                              ("B", True), ("B", True), (None, True)]]
  vote = voting.count(picks)
  assert vote == Vote(for_a=4, for_b=1, abstained=1)
  assert vote.winner == 0 and vote.valid == 5
  assert vote.share == pytest.approx(4 / 5)
  assert vote.scores() == pytest.approx((0.8, 0.2))


def test_ties_and_empty_votes_have_no_winner():
  tie = voting.count([0, 1, None])
  assert tie.winner is None and tie.share == 0.5 and tie.scores() == (0.5, 0.5)
  nobody = voting.count([None, None])
  assert nobody.winner is None and nobody.share == 0.0 and nobody.abstained == 2
  assert nobody.scores() == (0.5, 0.5)


def test_votes_add_up():
  assert Vote(1, 2, 3) + Vote(4, 0, 1) == Vote(5, 2, 4)


def test_position_consistency_needs_both_orders_to_pick_the_same_response():
  assert voting.position_consistent(Vote(2, 1), Vote(3, 0))
  assert not voting.position_consistent(Vote(2, 1), Vote(0, 3))  # flips with the order
  assert not voting.position_consistent(Vote(1, 1), Vote(1, 1))  # ties pick nothing
  assert not voting.position_consistent(Vote(0, 0, 2), Vote(0, 0, 2))
