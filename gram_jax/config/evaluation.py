"""Section `eval`: held-out and benchmark files, how they are judged and how many records of
each; rules of its fields."""
import ml_collections

from gram_jax.config.rules import Rule, at_least, one_of
from gram_jax.data import benchmarks


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.eval = ml_collections.ConfigDict()
  c.eval.files = ""  # comma-separated held-out / benchmark files
  c.eval.benchmark = "auto"  # auto (from the records' fields) or one of benchmarks.BENCHMARKS
  c.eval.batch_size = 16
  # tokens of one judging prompt; 0: the judge's own — a reasoning judge's budget (release:
  # 6,144), a verdict judge's context (uncut, as the official evaluation reads it)
  c.eval.max_len = 0
  c.eval.every_steps = 0  # 0: evaluate at the end of training only
  # > 0: score at most this many records of each evaluation file, for a first try (a record
  # is a pair; an RM-Bench item or an RMB best-of-n group counts as one); the report says so
  c.eval.max_pairs = 0
  c.eval.sample = "first"  # first: the file's first records | random: a sample seeded by seed


RULES: dict[str, Rule] = {
    "eval.benchmark": one_of("auto", *benchmarks.BENCHMARKS),
    "eval.max_len": at_least(0, "0: the judge's own"),
    "eval.max_pairs": at_least(0, "0: every record"),
    "eval.sample": one_of("first", "random"),
}
