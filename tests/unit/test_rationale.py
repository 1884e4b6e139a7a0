"""Rationale formats round-trip; malformed generations are 'no verdict', never a crash."""
import pytest
from hypothesis import given, strategies as st

from gram_jax.text import rationale, templates

OFFICIAL_FRAGMENT = ("[The Start of Assistant A's Response]\n{response_1}\n"
                 "[The End of Assistant A's Response]")


@pytest.mark.parametrize("fmt", rationale.FORMATS)
@pytest.mark.parametrize("label", ["A", "B"])
def test_round_trip(fmt, label):
  text = rationale.format_target("Feedback:\nfine\n\nConclusion:\nok", label, fmt)
  judged = rationale.parse(text, fmt=fmt)
  assert judged.verdict == label and judged.rationale.startswith("Feedback:")


def test_answer_inside_tags_not_after_them():
  text = "<think>\nB is wrong\n</think>\n<answer>\nA\n</answer>\ntrailing B"
  assert rationale.parse(text).verdict == "A"


@pytest.mark.parametrize("text", ["", "<think>never closed", "<answer>\nC\n</answer>",
                                  "<answer></answer>", "#Preferred:", "\x00\xff<answer>"])
def test_malformed_is_no_verdict(text):
  assert rationale.parse(text).verdict is None
  assert rationale.parse(text, fmt="preferred_line").verdict is None


@given(st.text())
def test_parser_never_raises(text):
  for fmt in rationale.FORMATS:
    judged = rationale.parse(text, fmt=fmt)
    assert judged.verdict in (None, "A", "B")


def test_released_prompt_keeps_its_interface():
  prompt = templates.GRAM_RR_PROMPT
  assert prompt.startswith("You are a helpful assistant in evaluating") and prompt == prompt.strip()
  assert "Comparision:" in prompt and "<answer>\nA or B\n</answer>" in prompt
  released = OFFICIAL_FRAGMENT.replace("{response_1}", "{response_a}")
  assert released in prompt and prompt.endswith("[The End of Assistant B's Response]")
