"""Section `reasoning` (stages that read a saved judge): how a GRAM-R² judge is read — its
protocol preset, votes, orders, sampling and score; unset fields keep the model's judge card.
View: the Reasoning a stage's judge runs with."""
from typing import Any

import ml_collections

from gram_jax.errors import GramError
from gram_jax.judge_card import resolve_reasoning


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.reasoning = ml_collections.ConfigDict(dict(
      mode="auto",  # auto: as the model's judge.json says (or a preset is named) | on | off
      preset="",  # release: the GRAM-RR release protocol (GRAM-RR prompt, one order,
                  # temperature 0.75, 2,048 new tokens, 8,192-token context)
      max_new_tokens=0,  # 0: the card's (or preset's)
      temperature=-1.0,  # < 0: the card's (or preset's)
      votes=0,  # voting@k: judgments in total; 0: the card's (or preset's)
      orders=0,  # 1: every judgment in the pair's given order (the release protocol); 2: half
                 # in each order (stricter); 0: the card's (or preset's)
      score="",  # verdict (vote shares, the published readout) | probability; "": the card's
  ))


def reasoning_settings(c: ml_collections.ConfigDict, card_reasoning: Any = None) -> Any:
  """The Reasoning a stage's judge runs with (None: a verdict-only GRAM readout)."""
  r = c.reasoning
  return resolve_reasoning(
      card_reasoning, r.mode, r.preset, max_new_tokens=r.max_new_tokens or None,
      temperature=r.temperature if r.temperature >= 0 else None, votes=r.votes or None,
      orders=r.orders or None, score=r.score or None,
      rationale_format=None if card_reasoning else c.template.rationale_format)


def check_reasoning(c: ml_collections.ConfigDict) -> None:
  """The settings make a valid reasoning judge whatever the model's card says."""
  if "reasoning" not in c:
    return
  try:
    on = c.copy_and_resolve_references()
    with on.unlocked():
      on.reasoning.mode = "on"
    reasoning_settings(on)
  except GramError as e:
    raise GramError(f"config.reasoning: {e}") from None
