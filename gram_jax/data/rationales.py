"""Pairs that carry a rationale proving their label: the preference-proving model's seed
data and targets (ProvedPair), and self-training's target-task rows, which may bring their
own (TaskPair)."""
import dataclasses
from typing import Any

from gram_jax.data.preference import PreferencePair, parse_preference_pair
from gram_jax.data.records import RecordError, text_field


@dataclasses.dataclass(frozen=True)
class ProvedPair:
  """A pair with its label and a rationale proving it: seed data for π_ψ and targets for π_φ."""
  prompt: str
  response_a: str
  response_b: str
  label: str
  rationale: str
  where: str = ""


def parse_proved_pair(row: Any, where: str, labels: tuple[str, ...] = ("A", "B")) -> ProvedPair:
  """{prompt (or question), response_a, response_b, label, rationale}."""
  if not isinstance(row, dict):
    raise RecordError(where, "<record>", f"expected a JSON object, got {type(row).__name__}")
  prompt_field = "prompt" if "prompt" in row else "question"
  label = text_field(row, "label", where).strip()
  if label not in labels:
    raise RecordError(where, "label", f"expected one of {list(labels)}, got {label!r}")
  return ProvedPair(text_field(row, prompt_field, where), text_field(row, "response_a", where),
                    text_field(row, "response_b", where), label,
                    text_field(row, "rationale", where), where)


@dataclasses.dataclass(frozen=True)
class TaskPair:
  """A labeled pair of the target task; `proved` when the row brings its own rationale
  (HelpSteer3-style human feedback), which is then the training target as written."""
  pair: PreferencePair
  proved: ProvedPair | None = None


RATIONALE_FIELDS = ("rationale", "feedback")


def parse_task_pair(row: Any, where: str, labels: tuple[str, ...] = ("A", "B")) -> TaskPair:
  """{prompt, response_a, response_b, label, rationale | feedback} (a pair with its own
  rationale), or any preference-pair row (to be proved by π_ψ)."""
  if isinstance(row, dict) and "response_a" in row and "label" in row:
    field = next((f for f in RATIONALE_FIELDS if f in row), None)
    if field is None:
      raise RecordError(where, "rationale", "a labeled {response_a, response_b, label} row "
                        "needs its rationale (or feedback) field; rows without one are "
                        "{prompt, chosen, rejected}")
    proved = parse_proved_pair({**row, "rationale": row[field]}, where, labels)
    chosen, rejected = ((proved.response_a, proved.response_b) if proved.label == labels[0]
                        else (proved.response_b, proved.response_a))
    return TaskPair(PreferencePair(proved.prompt, chosen, rejected, where), proved)
  return TaskPair(parse_preference_pair(row, where))
