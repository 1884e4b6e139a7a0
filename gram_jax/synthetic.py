"""The built-in reward-reasoning task: questions whose better answer can be checked by code.

It lets every stage run on a fresh machine with no download: small arithmetic, number
comparison and word-category questions, each with one correct and one wrong response, and a
templated rationale that proves the label (Feedback / Comparision / Conclusion, as released).
"""
import random
from typing import Iterator

from gram_jax.journal import jsonl_text, write_atomic

CATEGORIES = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum"],
    "animal": ["cat", "dog", "horse", "lion", "mouse", "rabbit", "tiger", "wolf", "zebra"],
    "color": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink"],
    "vegetable": ["carrot", "onion", "potato", "pepper", "lettuce", "garlic", "celery", "pea"],
}


def _arithmetic(rng: random.Random) -> tuple[str, str, str, str]:
  a, b = rng.randint(0, 9), rng.randint(0, 9)
  op = rng.choice(["+", "*"])
  truth = a + b if op == "+" else a * b
  wrong = truth + rng.choice([-3, -2, -1, 1, 2, 3])
  wrong = wrong if wrong >= 0 else truth + 1
  question = f"What is {a} {op} {b}?"
  fact = f"{a} {op} {b} is {truth}"
  return question, f"{a} {op} {b} = {truth}.", f"{a} {op} {b} = {wrong}.", fact


def _comparison(rng: random.Random) -> tuple[str, str, str, str]:
  a, b = rng.sample(range(0, 50), 2)
  big, small = max(a, b), min(a, b)
  question = f"Which number is larger, {a} or {b}?"
  return question, f"{big} is larger.", f"{small} is larger.", f"{big} is larger than {small}"


def _category(rng: random.Random) -> tuple[str, str, str, str]:
  name, other = rng.sample(sorted(CATEGORIES), 2)
  good, bad = rng.choice(CATEGORIES[name]), rng.choice(CATEGORIES[other])
  question = f"Name one {name}."
  return question, f"One {name} is {good}.", f"One {name} is {bad}.", \
      f"{good} is a {name} but {bad} is a {other}"


TASKS = {"arithmetic": _arithmetic, "comparison": _comparison, "category": _category}


def rationale(fact: str, response_a: str, response_b: str, label: str) -> str:
  """A proof of `label` in the released GRAM-R² three-part format."""
  winner, loser = ("A", "B") if label == "A" else ("B", "A")
  return (f"Feedback:\nResponse A says: {response_a} Response B says: {response_b}\n\n"
          f"Comparision:\nWe know {fact}. Response {winner} is correct and Response {loser} "
          f"is wrong.\n\nConclusion:\nResponse {winner} is better.")


def make_pairs(count: int, seed: int, tasks: tuple[str, ...] = tuple(TASKS)) -> list[dict]:
  """`count` labeled pairs {prompt, chosen, rejected, fact, task}, reproducible from `seed`."""
  unknown = sorted(set(tasks) - set(TASKS))
  if unknown:
    raise ValueError(f"unknown synthetic tasks {unknown} (known: {', '.join(TASKS)})")
  rng = random.Random(seed)
  pairs = []
  for _ in range(count):
    name = rng.choice(sorted(tasks))
    prompt, chosen, rejected, fact = TASKS[name](rng)
    pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "fact": fact,
                  "task": name})
  return pairs


def as_unlabeled(pairs: list[dict], seed: int) -> Iterator[dict]:
  """Random A/B order, the gold label kept aside as `gold` (never read by training)."""
  rng = random.Random(seed)
  for pair in pairs:
    chosen_first = rng.random() < 0.5
    a, b = (pair["chosen"], pair["rejected"]) if chosen_first else (pair["rejected"],
                                                                     pair["chosen"])
    yield {"prompt": pair["prompt"], "response_a": a, "response_b": b,
           "gold": "A" if chosen_first else "B"}


def write_jsonl(rows: Iterator[dict] | list[dict], path: str) -> str:
  """Writes atomically: a reader never sees a half-written file."""
  return write_atomic(path, jsonl_text(list(rows)))


def corpus(pairs: list[dict]) -> Iterator[str]:
  """Text to train the built-in tokenizer on."""
  for pair in pairs:
    yield pair["prompt"]
    yield pair["chosen"]
    yield pair["rejected"]
    yield rationale(pair["fact"], pair["chosen"], pair["rejected"], "A")


def as_proved(pairs: list[dict], seed: int) -> Iterator[dict]:
  """Seed records for the prover: random A/B order, the label, and the templated proof."""
  for row, pair in zip(as_unlabeled(pairs, seed), pairs):
    yield {**{k: row[k] for k in ("prompt", "response_a", "response_b")}, "label": row["gold"],
           "rationale": rationale(pair["fact"], row["response_a"], row["response_b"],
                                  row["gold"])}
