"""GRAM-R² output formats: a rationale then a verdict, and a parser that never crashes.

Two formats:
- "answer_tag" (default, the released GRAM-RR checkpoints):
  "<think>\\n{rationale}\\n</think>\\n<answer>\\n{label}\\n</answer>"
- "preferred_line" (for GRAM-style prompts): "{rationale}\\n#Preferred: {label}"
The parser reads the letter *inside* <answer>...</answer> (the model card's parser reads
after the last </answer> and so always falls through to "B"; docs/method.md §7).
"""
import dataclasses
import re
from typing import Sequence

FORMATS = ("answer_tag", "preferred_line")
_ANSWER = re.compile(r"<answer>\s*([^<\s]+)\s*</answer>", re.S)
_THINK = re.compile(r"<think>\s*(.*?)\s*</think>", re.S)
_PREFERRED = re.compile(r"#Preferred:\s*(\S+)")
# The whole reply in the released format: one closed <think>, then one closed <answer>.
_STRICT_ANSWER_TAG = re.compile(
    r"\s*<think>(?:(?!<think>|</think>).)*</think>\s*<answer>\s*[^<\s]+\s*</answer>\s*", re.S)
_STRICT_PREFERRED = re.compile(r"(?:(?!#Preferred:).)*#Preferred:[ \t]*\S+\s*", re.S)


@dataclasses.dataclass(frozen=True)
class Judgment:
  rationale: str
  verdict: str | None  # a label, or None when the output holds no parsable verdict


def format_target(rationale: str, label: str, fmt: str = "answer_tag") -> str:
  """The reply a reward model is trained to write."""
  if fmt == "answer_tag":
    return f"<think>\n{rationale.strip()}\n</think>\n<answer>\n{label}\n</answer>"
  if fmt == "preferred_line":
    return f"{rationale.strip()}\n#Preferred: {label}"
  raise ValueError(f"unknown rationale format {fmt!r} (known: {', '.join(FORMATS)})")


def verdict_prefix(text_before_verdict: str, fmt: str = "answer_tag") -> str:
  """Where the label token goes: the reply up to and including the answer opener."""
  return text_before_verdict + ("<answer>\n" if fmt == "answer_tag" else "#Preferred: ")


def parse(text: str, labels: Sequence[str] = ("A", "B"), fmt: str = "answer_tag") -> Judgment:
  """Rationale and verdict of a generation; a missing or unknown verdict gives None."""
  if fmt == "answer_tag":
    answers = _ANSWER.findall(text)
    verdict = answers[0] if answers else None
    think = _THINK.search(text)
    rationale = think.group(1) if think else text.split("<answer>")[0].strip()
  elif fmt == "preferred_line":
    found = _PREFERRED.findall(text)
    verdict = found[-1] if found else None
    rationale = text.split("#Preferred:")[0].strip()
  else:
    raise ValueError(f"unknown rationale format {fmt!r} (known: {', '.join(FORMATS)})")
  return Judgment(rationale, verdict if verdict in labels else None)


def broken_format(text: str, fmt: str = "answer_tag") -> bool:
  """True unless the reply is exactly the format: for answer_tag one closed <think> block
  then one closed <answer> block and nothing else; for preferred_line a rationale ending
  with a single '#Preferred: X' line."""
  if fmt == "answer_tag":
    return _STRICT_ANSWER_TAG.fullmatch(text) is None
  if fmt == "preferred_line":
    return _STRICT_PREFERRED.fullmatch(text) is None
  raise ValueError(f"unknown rationale format {fmt!r} (known: {', '.join(FORMATS)})")


def reply_before_verdict(text: str, fmt: str = "answer_tag") -> str | None:
  """The generated reply cut just before the verdict letter, or None when there is none."""
  marker = "<answer>" if fmt == "answer_tag" else "#Preferred:"
  cut = text.find(marker)
  return None if cut < 0 else text[:cut]
