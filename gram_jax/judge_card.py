"""How a model is read as a judge: its prompt, labels, chat template and reasoning settings.

Every stage that trains a judge writes them into `judge.json` (the judge card) beside its
weights, and every reader (RewardModel, evaluate, serve, best-of-n) uses the card unless told
otherwise, so a model is judged with the prompt it was trained with. `judge_prompt` is the one
rule that picks the prompt: a reasoning judge (a preset, or a card with a rationale format)
gets the GRAM-RR prompt unless a reasoning prompt is named, and a verdict-only prompt with a
reasoning judge is an error naming both settings.
"""
import dataclasses
import json
import os
from typing import Any, Sequence

from absl import logging

from gram_jax import storage
from gram_jax.errors import GramError
from gram_jax.text import templates

JUDGE_CARD = "judge.json"
SCORES = ("verdict", "probability")
ORDERS = (1, 2)
DEFAULT_PROMPT_LEN = 2048  # a judge without a known context reads prompts this long

# Prompts by name. A verdict prompt ends at the verdict position (the label comes next); a
# reasoning prompt asks for a rationale first.
VERDICT_PROMPTS = {"gram": templates.GRAM_JUDGE_PROMPT, "compact": templates.COMPACT_JUDGE_PROMPT}
REASONING_PROMPTS = {"gram_rr": templates.GRAM_RR_PROMPT,
                     "compact_rr": templates.COMPACT_RR_PROMPT}
PROMPTS = {**VERDICT_PROMPTS, **REASONING_PROMPTS}
PROMPT_NAMES = {text: name for name, text in PROMPTS.items()}


@dataclasses.dataclass(frozen=True)
class Reasoning:
  """A GRAM-R² model writes a rationale, then its verdict.

  votes: judgments sampled in total (voting@k); more than one per order needs
  temperature > 0. orders: 1, the released GRAM-RR protocol: all k judgments see the pair
  in one order and a tie goes to the response shown first (as the release's
  `max(set(votes), key=votes.count)` does); 2, gram_jax's stricter protocol: k/2 judgments
  in each order, a tie is no verdict (wrong, in accuracy). score: what a pair's scores are.
  'verdict' (the published readout): the vote shares of the parsed <answer> letters;
  'probability': P(A)/P(B) read at the answer position after each rationale, averaged over
  the judgments in the pair's own orientation and over both orders whatever `orders` is
  (SPEC §6; smooth, for RLHF rewards). context_len: the
  tokens of prompt + reply the judge was made for (the release serves 8,192); the prompt
  budget is context_len - max_new_tokens (0: unknown, 2,048).
  """
  rationale_format: str = "answer_tag"
  max_new_tokens: int = 1024
  temperature: float = 0.0
  votes: int = 2
  orders: int = 2
  score: str = "verdict"
  context_len: int = 0

  def __post_init__(self):
    if self.orders not in ORDERS:
      raise GramError(f"reasoning orders must be 1 (the release protocol: one order) or 2 "
                      f"(both orders), got {self.orders}")
    if self.votes < self.orders or self.votes % self.orders:
      raise GramError(f"reasoning votes ({self.votes}) must be a positive multiple of orders "
                      f"({self.orders}): votes count judgments in total")
    if self.samples_per_order > 1 and self.temperature <= 0:
      raise GramError(f"voting over {self.samples_per_order} judgments per order needs "
                      "sampling: set a temperature > 0 (greedy judgments are all the same)")
    if self.score not in SCORES:
      raise GramError(f"reasoning score {self.score!r} not in {SCORES}")
    if self.context_len and self.context_len <= self.max_new_tokens:
      raise GramError(f"reasoning context_len ({self.context_len}) leaves no room for a prompt "
                      f"after max_new_tokens ({self.max_new_tokens})")

  @property
  def samples_per_order(self) -> int:
    return self.votes // self.orders

  def prompt_len(self) -> int:
    """Tokens of the judging prompt (the rest of the context is the reply's)."""
    return self.context_len - self.max_new_tokens if self.context_len else DEFAULT_PROMPT_LEN

  def protocol(self) -> str:
    """One line that says how verdicts were read, for every report."""
    orders = ("orders=1 (the release protocol: every judgment sees one order; a tie goes to "
              "the response shown first)" if self.orders == 1 else
              f"orders=2 ({self.samples_per_order} per order; a tie counts wrong)")
    return (f"{orders}, votes={self.votes}, temperature={self.temperature:g}, "
            f"max_new_tokens={self.max_new_tokens}, score={self.score}")


# The released GRAM-RR checkpoints' evaluation (official model card and vLLM script):
# one order, temperature 0.75, 2,048 new tokens, vLLM's max_model_len 8,192.
RELEASE = Reasoning(max_new_tokens=2048, temperature=0.75, votes=1, orders=1, context_len=8192)
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
  given = {k: v for k, v in overrides.items() if v is not None}
  if "orders" in given and "votes" not in given:  # keep the judgments per order
    given["votes"] = base.samples_per_order * given["orders"]
  return dataclasses.replace(base, **given)


def named_prompt(value: str) -> str:
  """A prompt's text from its name (`gram`, `gram_rr`, ...) or the text itself."""
  return PROMPTS.get(value, value)


def prompt_name(text: str) -> str:
  """How reports name a prompt: its name, or 'custom' with the start of its text."""
  if text in PROMPT_NAMES:
    return PROMPT_NAMES[text]
  head = " ".join(text.split())[:40]
  return f"custom ({head!r}...)"


def is_verdict_prompt(text: str) -> bool:
  """Whether a prompt ends at the verdict position: the GRAM prompts, or any text whose
  last line is the '#Preferred:' marker (the label token comes next, no room to reason)."""
  return text in VERDICT_PROMPTS.values() or text.rstrip().endswith("#Preferred:")


def judge_prompt(template: str | None, reasoning: Reasoning | None, card: dict | None = None,
                 template_field: str = "template", reasoning_field: str = "reasoning") -> str:
  """The one rule for the prompt a judge reads pairs with.

  An explicit `template` (a name or the text) wins, then the card's, then the default: the
  GRAM-RR prompt for a reasoning judge, the GRAM prompt otherwise. A verdict-only prompt with
  a reasoning judge, or a reasoning prompt read as a verdict, is an error naming both
  settings (`template_field`, `reasoning_field`): either would score garbage silently.
  """
  card = card or {}
  if template:
    text = named_prompt(template)
    source = f"{template_field}={template if template in PROMPTS else prompt_name(text)}"
  elif card.get("template"):
    text, source = card["template"], f"the judge card's template ({prompt_name(card['template'])})"
  else:
    return templates.GRAM_RR_PROMPT if reasoning else templates.GRAM_JUDGE_PROMPT
  if reasoning is not None and is_verdict_prompt(text):
    raise GramError(f"{source} is a verdict-only prompt, but {reasoning_field} makes this a "
                    "reasoning judge (rationale first): drop the template to use the GRAM-RR "
                    "prompt, name a reasoning prompt (gram_rr), or turn reasoning off")
  if reasoning is None and text in REASONING_PROMPTS.values():
    raise GramError(f"{source} asks for a rationale first, but {reasoning_field} reads a "
                    "verdict at the prompt's end: turn reasoning on (a preset or the card) or "
                    "use a verdict prompt (gram)")
  return text


def write_judge_card(path: str, template: str, labels: Sequence[str],
                     reasoning: Reasoning | None, chat_template: str | None = None) -> None:
  card = {"template": template, "labels": list(labels), "chat_template": chat_template or None,
          "reasoning": dataclasses.asdict(reasoning) if reasoning else None}
  storage.write_atomic(os.path.join(path, JUDGE_CARD), json.dumps(card, indent=2))


def _reasoning_of(fields: dict) -> Reasoning:
  """Cards written before `orders` existed counted votes per order, over both orders."""
  if "orders" not in fields:
    fields = {**fields, "orders": 2, "votes": 2 * fields.get("votes", 1)}
  return Reasoning(**fields)


RELEASED_NAME = "gram-rr"  # the released reasoning judges: GRAM-RR-LLaMA-3.{1-8B,2-3B}-...
RELEASED_TAG = "rewardreasoning"  # their model card's tag


def _front_matter_tags(readme: str) -> list[str]:
  """The `tags:` list of a model card's YAML front matter (Hub model cards open with one)."""
  if not readme.startswith("---"):
    return []
  tags, inside = [], False
  for line in readme.split("\n")[1:]:
    if line.strip() == "---":
      break
    if not line.startswith((" ", "-")):
      inside = line.split(":", 1)[0].strip() == "tags"
    elif inside and line.strip().startswith("-"):
      tags.append(line.strip()[1:].strip().strip("'\"").lower())
  return tags


def released_reasoning_judge(path: str) -> str | None:
  """Why a checkpoint with no judge card is a released GRAM-RR judge, or None: its path or
  its config's `_name_or_path` names GRAM-RR, or its model card is tagged RewardReasoning.
  Read as a verdict judge such a model would be scored at the GRAM prompt's end, where it
  was trained to start a rationale."""
  if RELEASED_NAME in path.lower():
    return "its path names GRAM-RR"
  config, readme = storage.contained(path, "config.json"), storage.contained(path, "README.md")
  try:
    if storage.isfile(config):
      name = str(json.loads(storage.read_text(config)).get("_name_or_path", ""))
      if RELEASED_NAME in name.lower():
        return f"config.json's _name_or_path is {name!r}"
    if storage.isfile(readme) and RELEASED_TAG in _front_matter_tags(storage.read_text(readme)):
      return "its model card (README.md) is tagged RewardReasoning"
  except (ValueError, AttributeError, UnicodeDecodeError):
    return None  # an unreadable file identifies nothing; the loader reports it
  return None


def read_judge_card(path: str) -> dict:
  """The judge settings saved with a model, or {} (e.g. an HF checkpoint from elsewhere). A
  cardless released GRAM-RR checkpoint reads as released: {"reasoning": RELEASE,
  "released": why} (`released_reasoning_judge`)."""
  card_path = storage.contained(path, JUDGE_CARD)
  if not storage.isfile(card_path):
    why = released_reasoning_judge(path)
    if why is None:
      return {}
    logging.info("%s has no judge card and %s: read as a released GRAM-RR judge "
                 "(reasoning.preset=release; reasoning.mode=off reads it as a verdict judge)",
                 path, why)
    return {"reasoning": RELEASE, "released": why}
  try:
    card = json.loads(storage.read_text(card_path))
    if card.get("reasoning") is not None:
      card["reasoning"] = _reasoning_of(card["reasoning"])
    return card
  except (json.JSONDecodeError, TypeError, AttributeError, GramError) as e:
    raise GramError(f"{card_path}: not a valid judge card ({e})") from None
