"""Rules of single config fields: a Rule says what is wrong with a value, or None."""
import math
from typing import Any, Callable

import ml_collections

Rule = Callable[[Any], str | None]


def one_of(*allowed: Any) -> Rule:
  return lambda value: None if value in allowed else f"{value!r} not in {allowed}"


def at_least(low: float, meaning: str = "") -> Rule:
  note = f" ({meaning})" if meaning else ""
  return lambda value: None if value >= low else f"must be >= {low}{note}, got {value}"


def positive(value: Any) -> str | None:
  """A finite number above zero (a NaN or infinite learning rate trains to NaN)."""
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
  return None if ok else f"must be a finite number > 0, got {value}"


def count_or_unset(value: Any) -> str | None:
  """A count >= 1, or -1 for 'not set'."""
  return None if value == -1 or value >= 1 else f"must be >= 1, or -1 (unset), got {value}"


def within(low: float, high: float, closed: bool = False) -> Rule:
  """[low, high), or [low, high] when `closed`."""
  inside = lambda value: low <= value <= high if closed else low <= value < high
  interval = f"[{low}, {high}{']' if closed else ')'}"
  return lambda value: None if inside(value) else f"must be in {interval}, got {value}"


def field_value(c: ml_collections.ConfigDict, path: str) -> Any:
  """The value at a dotted path, or KeyError when the stage's config has no such field."""
  for name in path.split("."):
    c = c[name]
  return c
