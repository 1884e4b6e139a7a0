"""How a model is read as a judge: its template, labels and reasoning settings.

An exported model carries them in `judge.json` (the judge card) beside its weights, so
`RewardModel.from_pretrained` reads a self-trained GRAM-R² model the way it was trained.
"""
import dataclasses
import json
import os
from typing import Any, Sequence

from gram_jax import storage
from gram_jax.errors import GramError

JUDGE_CARD = "judge.json"
SCORES = ("verdict", "probability")


@dataclasses.dataclass(frozen=True)
class Reasoning:
  """A GRAM-R² model writes a rationale, then its verdict.

  votes: judgments sampled per order (voting@k); more than one needs temperature > 0.
  score: what a pair's scores are. 'verdict' (the published readout): the vote shares of
  the parsed <answer> letters over both orders; 'probability': P(A)/P(B) read at the answer
  position after each rationale, averaged over both orders (smooth, for RLHF rewards).
  """
  rationale_format: str = "answer_tag"
  max_new_tokens: int = 1024
  temperature: float = 0.0
  votes: int = 1
  score: str = "verdict"

  def __post_init__(self):
    if self.votes < 1:
      raise GramError(f"reasoning votes must be >= 1, got {self.votes}")
    if self.votes > 1 and self.temperature <= 0:
      raise GramError(f"voting over {self.votes} judgments needs sampling: set a temperature "
                      "> 0 (greedy judgments are all the same)")
    if self.score not in SCORES:
      raise GramError(f"reasoning score {self.score!r} not in {SCORES}")


# The released GRAM-RR checkpoints' inference settings (official model card).
RELEASE = Reasoning(max_new_tokens=2048, temperature=0.75)
PRESETS = {"release": RELEASE}
MODES = ("auto", "on", "off")


def resolve_reasoning(card_reasoning: Reasoning | None, mode: str = "auto", preset: str = "",
                      **overrides: Any) -> Reasoning | None:
  """The reasoning settings a judge runs with: the model's card, or a named preset, with
  the fields the user set (a None override keeps the card's or preset's value).

  mode auto: reasoning when the card says so or a preset is named; on: always; off: never.
  """
  if mode not in MODES:
    raise GramError(f"reasoning mode {mode!r} not in {MODES}")
  if preset and preset not in PRESETS:
    raise GramError(f"unknown reasoning preset {preset!r} (known: {', '.join(PRESETS)})")
  if mode == "off" or (mode == "auto" and card_reasoning is None and not preset):
    return None
  base = PRESETS[preset] if preset else (card_reasoning or Reasoning())
  return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def write_judge_card(path: str, template: str, labels: Sequence[str],
                     reasoning: Reasoning | None) -> None:
  card = {"template": template, "labels": list(labels),
          "reasoning": dataclasses.asdict(reasoning) if reasoning else None}
  storage.write_atomic(os.path.join(path, JUDGE_CARD), json.dumps(card, indent=2))


def read_judge_card(path: str) -> dict:
  """The judge settings saved with a model, or {} (e.g. an HF checkpoint from elsewhere)."""
  card_path = os.path.join(path, JUDGE_CARD)
  if not storage.isfile(card_path):
    return {}
  try:
    card = json.loads(storage.read_text(card_path))
    if card.get("reasoning") is not None:
      card["reasoning"] = Reasoning(**card["reasoning"])
    return card
  except (json.JSONDecodeError, TypeError, AttributeError, GramError) as e:
    raise GramError(f"{card_path}: not a valid judge card ({e})") from None
