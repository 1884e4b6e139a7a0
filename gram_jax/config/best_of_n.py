"""Section `best_of_n` (stage best_of_n): the candidates, where the winners go and the
ranking method; rules of its fields."""
import ml_collections

from gram_jax.config.rules import Rule, one_of
from gram_jax.errors import GramError
from gram_jax.inference import ranking


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.best_of_n = ml_collections.ConfigDict(dict(
      input="",  # JSONL/JSON/Parquet rows with prompt and responses (required)
      output="",  # JSONL of the rows with their winners; empty: <workdir>/winners.jsonl
      method=ranking.DEFAULT_METHOD,  # linear (the official scan, n - 1 comparisons) |
                                      # knockout | round_robin | bradley_terry
  ))


RULES: dict[str, Rule] = {
    "best_of_n.method": one_of(*ranking.METHODS),
}


def check_input(c: ml_collections.ConfigDict) -> None:
  """The stage needs its candidates."""
  if c.stage == "best_of_n" and not c.best_of_n.input:
    raise GramError("config.best_of_n.input: required (rows with prompt and responses)")
