"""Majority votes over judgments (GRAM-R² voting@k and self-training pseudo-labels).

A pair is judged with its responses in both orders. A verdict written with the responses
swapped is mapped back to the pair's own orientation before it is counted: index 0 is the
pair's response_a, index 1 its response_b. A judgment without a verdict does not vote; it is
counted as an abstention, so reports can say how many there were.
"""
import dataclasses
from typing import Iterable, Sequence


def oriented(verdict: str | None, swapped: bool, labels: Sequence[str] = ("A", "B")
             ) -> int | None:
  """Which of the pair's responses a verdict picks (0 = response_a), or None."""
  if verdict not in labels:
    return None
  index = list(labels).index(verdict)
  return 1 - index if swapped else index


@dataclasses.dataclass(frozen=True)
class Vote:
  """Votes for the pair's response_a and response_b, and the judgments that did not vote."""
  for_a: int = 0
  for_b: int = 0
  abstained: int = 0

  @property
  def valid(self) -> int:
    return self.for_a + self.for_b

  @property
  def winner(self) -> int | None:
    """0 (response_a), 1 (response_b), or None on a tie or when nobody voted."""
    if self.for_a == self.for_b:
      return None
    return 0 if self.for_a > self.for_b else 1

  @property
  def share(self) -> float:
    """The winner's share of the valid votes (0.5 on a tie, 0 when nobody voted)."""
    if not self.valid:
      return 0.0
    return max(self.for_a, self.for_b) / self.valid

  def scores(self) -> tuple[float, float]:
    """Vote shares of response_a and response_b; (0.5, 0.5) when nobody voted."""
    if not self.valid:
      return 0.5, 0.5
    return self.for_a / self.valid, self.for_b / self.valid

  def __add__(self, other: "Vote") -> "Vote":
    return Vote(self.for_a + other.for_a, self.for_b + other.for_b,
                self.abstained + other.abstained)


def count(picks: Iterable[int | None]) -> Vote:
  """A Vote from oriented picks (0, 1, or None for no verdict)."""
  picks = list(picks)
  return Vote(picks.count(0), picks.count(1), sum(p is None for p in picks))


def position_consistent(first: Vote, second: Vote) -> bool:
  """Whether the verdicts of the two orders pick the same response (neither tied nor empty)."""
  return first.winner is not None and first.winner == second.winner
