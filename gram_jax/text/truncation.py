"""Make a rendered example fit a token budget by trimming its free-text fields.

Template text (markers, instructions, the verdict position) is never cut: only the named
fields shrink, the responses first and in proportion to their lengths, then the question.
"""
from typing import Any, Callable, Sequence

from gram_jax.errors import GramError
from gram_jax.text.tokenizer import encode_plain

Fields = dict[str, str]
DEFAULT_ORDER = (("response_a", "response_b"), ("prompt",))


def fit_fields(tokenizer: Any, fields: Fields, measure: Callable[[Fields], int], budget: int,
               groups: Sequence[Sequence[str]] = DEFAULT_ORDER,
               budget_name: str = "") -> tuple[Fields, bool]:
  """Returns (fields that fit, whether anything was trimmed); raises if impossible, naming
  the budget's setting (`budget_name`, e.g. config.data.cutoff_len) when given."""
  total = measure(fields)
  if total <= budget:
    return fields, False
  fields = dict(fields)
  for group in groups:
    for _ in range(4):  # re-tokenising after a cut can merge tokens differently; converge
      excess = total - budget
      if excess <= 0:
        return fields, True
      tokens = {name: encode_plain(tokenizer, fields[name]) for name in group}
      available = sum(max(len(t) - 1, 0) for t in tokens.values())
      if available <= 0:
        break
      cut = min(available, excess + len(group))
      for name, keep in _keep_lengths(tokens, cut).items():
        if keep < len(tokens[name]):
          fields[name] = tokenizer.decode(tokens[name][:keep])
      total = measure(fields)
    if total <= budget:
      return fields, True
  limit = f"{budget_name}={budget}" if budget_name else str(budget)
  raise GramError(f"cannot fit into {limit} tokens even after trimming "
                  f"{[n for g in groups for n in g]} ({total} tokens remain; raise "
                  f"{budget_name or 'the token budget'})")


def _keep_lengths(tokens: dict[str, list[int]], cut: int) -> dict[str, int]:
  """Tokens each field keeps when `cut` tokens go, in proportion to length (at least one
  kept each); the rounding remainder comes off the longest fields."""
  total = sum(len(t) for t in tokens.values())
  keep = {name: len(ids) - min(len(ids) - 1, cut * len(ids) // total)
          for name, ids in tokens.items()}
  remainder = cut - sum(len(tokens[n]) - k for n, k in keep.items())
  for name in sorted(keep, key=lambda n: -keep[n]):
    take = min(remainder, keep[name] - 1)
    keep[name] -= take
    remainder -= take
  return keep
