"""The built-in reward-reasoning task: questions whose better answer can be checked by code.

It lets every stage run on a fresh machine with no download: small arithmetic, number
comparison and word-category questions, each with one correct and one wrong response, and a
templated rationale that proves the label (Feedback / Comparision / Conclusion, as released).
"""
import random
from typing import Iterator

CATEGORIES = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum",
              "kiwi"],
    "animal": ["cat", "dog", "horse", "lion", "mouse", "rabbit", "tiger", "wolf", "zebra",
               "bear"],
    "color": ["red", "blue", "green", "yellow", "purple", "black", "white", "pink", "brown",
              "gray"],
    "vegetable": ["carrot", "onion", "potato", "pepper", "lettuce", "garlic", "celery", "pea",
                  "cabbage", "spinach"],
    "tool": ["hammer", "saw", "drill", "wrench", "shovel", "rake", "chisel", "pliers", "ladder",
             "axe"],
}

# (prompt, chosen, rejected, what the question asks for, why the chosen response is right,
#  why the rejected one is wrong)
Item = tuple[str, str, str, str, str, str]


def _arithmetic() -> Iterator[Item]:
  for a in range(10):
    for b in range(10):
      for op in ("+", "*"):
        truth = a + b if op == "+" else a * b
        for wrong in sorted({max(truth + d, 0) for d in (-3, -2, -1, 1, 2, 3)} - {truth}):
          yield (f"What is {a} {op} {b}?", f"{a} {op} {b} = {truth}.",
                 f"{a} {op} {b} = {wrong}.", f"the value of {a} {op} {b}",
                 f"{a} {op} {b} is {truth}", f"{a} {op} {b} is not {wrong}")


def _comparison() -> Iterator[Item]:
  for a in range(50):
    for b in range(50):
      if a != b:
        big, small = max(a, b), min(a, b)
        yield (f"Which number is larger, {a} or {b}?", f"{big} is larger.",
               f"{small} is larger.", f"the larger of {a} and {b}",
               f"{big} is larger than {small}", f"{small} is smaller than {big}")


def _article(noun: str) -> str:
  return ("an " if noun[0] in "aeiou" else "a ") + noun


def _category() -> Iterator[Item]:
  for name, words in CATEGORIES.items():
    for other, other_words in CATEGORIES.items():
      if other == name:
        continue
      for good in words:
        for bad in other_words:
          yield (f"Name one {name}.", f"One {name} is {good}.", f"One {name} is {bad}.",
                 _article(name), f"{good} is {_article(name)}", f"{bad} is {_article(other)}")


# Every distinct pair each task can make: splits drawn from them never share a pair.
TASKS = {"arithmetic": _arithmetic, "comparison": _comparison, "category": _category}


def rationale(pair: dict, label: str) -> str:
  """A proof of `label` in the released GRAM-R² three-part format: each response judged
  where it stands, then the verdict that follows."""
  reasons = {label: f"right: {pair['right']}", ("B" if label == "A" else "A"):
             f"wrong: {pair['wrong']}"}
  return (f"Feedback:\nThe question asks for {pair['asks']}.\n\nComparision:\n"
          f"Response A is {reasons['A']}. Response B is {reasons['B']}.\n\n"
          f"Conclusion:\nResponse {label} is better.")


def disjoint_splits(sizes: dict[str, int], seed: int,
                    tasks: tuple[str, ...] = tuple(TASKS)) -> dict[str, list[dict]]:
  """Labeled pairs {prompt, chosen, rejected, asks, right, wrong, task} (what the question
  asks for; why each response is right or wrong) for each named split, no pair in
  two splits (nor twice in one), reproducible from `seed`. Each pair's task is drawn
  uniformly from `tasks`."""
  unknown = sorted(set(tasks) - set(TASKS))
  if unknown:
    raise ValueError(f"unknown synthetic tasks {unknown} (known: {', '.join(TASKS)})")
  rng = random.Random(seed)
  names = sorted(tasks)
  pools = {}
  for name in names:
    pool = list(TASKS[name]())
    rng.shuffle(pool)
    pools[name] = pool
  splits = {}
  for split, count in sizes.items():
    rows = []
    for _ in range(count):
      name = rng.choice([n for n in names if pools[n]] or [None])
      if name is None:
        raise ValueError(f"the tasks {names} have fewer distinct pairs than the "
                         f"{sum(sizes.values())} asked for")
      prompt, chosen, rejected, asks, right, wrong = pools[name].pop()
      rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "asks": asks,
                   "right": right, "wrong": wrong, "task": name})
    splits[split] = rows
  return splits


def make_pairs(count: int, seed: int, tasks: tuple[str, ...] = tuple(TASKS)) -> list[dict]:
  """`count` distinct labeled pairs {prompt, chosen, rejected, asks, right, wrong, task}."""
  return disjoint_splits({"pairs": count}, seed, tasks)["pairs"]


def pair_key(prompt: str, first: str, second: str) -> tuple[str, frozenset[str]]:
  """What makes two pairs the same pair, whatever the order of their responses."""
  return prompt, frozenset((first, second))


def as_unlabeled(pairs: list[dict], seed: int) -> Iterator[dict]:
  """Random A/B order, the gold label kept aside as `gold` (never read by training)."""
  rng = random.Random(seed)
  for pair in pairs:
    chosen_first = rng.random() < 0.5
    a, b = (pair["chosen"], pair["rejected"]) if chosen_first else (pair["rejected"],
                                                                     pair["chosen"])
    yield {"prompt": pair["prompt"], "response_a": a, "response_b": b,
           "gold": "A" if chosen_first else "B"}


def corpus(pairs: list[dict]) -> Iterator[str]:
  """Text to train the built-in tokenizer on."""
  for pair in pairs:
    yield pair["prompt"]
    yield pair["chosen"]
    yield pair["rejected"]
    yield rationale(pair, "A")


def as_proved(pairs: list[dict], seed: int) -> Iterator[dict]:
  """Seed records for the prover: random A/B order, the label, and the templated proof."""
  for row, pair in zip(as_unlabeled(pairs, seed), pairs):
    yield {**{k: row[k] for k in ("prompt", "response_a", "response_b")}, "label": row["gold"],
           "rationale": rationale(pair, row["gold"])}
