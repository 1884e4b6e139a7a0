"""Section `template`: the judge's and the prover's prompts, the verdict labels and the
rationale format; views: the prompt a stage's judge uses, the prover's prompt and the chat
template every prompt is wrapped in (`tokenizer.chat_template`)."""
import ml_collections

from gram_jax.judge_card import Reasoning, judge_prompt
from gram_jax.text import templates


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.template = ml_collections.ConfigDict()
  # auto: the model's judge card, else GRAM-RR for a reasoning judge, else GRAM (official);
  # or a name (gram, compact, gram_rr, compact_rr) or the prompt text itself.
  c.template.judge = "auto"
  c.template.labels = ("A", "B")
  c.template.prover = "default"  # default (templates.PROVER_PROMPT) or the text itself
  c.template.rationale_format = "answer_tag"  # answer_tag (released) | preferred_line


def template_setting(c: ml_collections.ConfigDict) -> str | None:
  """config.template.judge as the user set it (None: auto)."""
  return None if c.template.judge == "auto" else c.template.judge


def judge_template(c: ml_collections.ConfigDict, reasoning: bool = False) -> str:
  """The prompt a training stage's judge uses (judge_card.judge_prompt's rule): a verdict
  judge (finetune, baselines) or a reasoning judge (the self-trained policy)."""
  return judge_prompt(template_setting(c), Reasoning() if reasoning else None,
                      template_field="config.template.judge",
                      reasoning_field=f"config.stage={c.stage}")


def prover_template(c: ml_collections.ConfigDict) -> str:
  return templates.PROVER_PROMPT if c.template.prover == "default" else c.template.prover


def chat_template(c: ml_collections.ConfigDict) -> str | None:
  """The chat template every prompt of the run is wrapped in (None: the tokenizer's own)."""
  return c.tokenizer.chat_template or None
