"""Client and record text is parsed in linear time: the inputs that made the old
backtracking patterns quadratic (56 KB of unclosed turn markers froze the server's event
loop for 9 s; one 144k-character record took 8 s) finish at once. The bound is 1 s for
inputs 4-16x the reported ones, where quadratic parsing takes minutes."""
import time

import pytest

from gram_jax import GramError
from gram_jax.data import records
from gram_jax.serving.request_parsing import Limits, RequestError, parse_group_request
from gram_jax.text import chat_markup


def _timed(call):
  start = time.perf_counter()
  try:
    call()
  except (ValueError, GramError, RequestError):
    pass  # a refusal is an answer too; what matters is how long it took
  return time.perf_counter() - start


@pytest.mark.parametrize("text", [
    "<|im_start|>a\n" * 16000,
    "<|start_header_id|>user<|end_header_id|>\n\n" * 8000,
    "<|im_start|>user\nq<|im_end|>\n" + "<|im_start|>" * 20000,
    "<|im_start|>user\n" + "<think> " * 20000])
def test_pathological_chat_markup_is_parsed_at_once(text):
  assert _timed(lambda: chat_markup.question_of(text)) < 1.0
  assert _timed(lambda: chat_markup.split_query(text + "answer", text)) < 1.0


def test_long_runs_of_end_and_pad_markers_are_stripped_at_once():
  assert _timed(lambda: chat_markup.answer_of("x" + "<|im_end|> " * 40000, None)) < 1.0
  assert chat_markup.answer_of("x" + "<|im_end|> " * 40000, None) == "x"
  pads = "<|endoftext|>" * 40000 + "q"
  assert _timed(lambda: chat_markup.strip_leading_pads(pads)) < 1.0
  assert chat_markup.strip_leading_pads(pads) == "q"


def test_a_group_request_of_unclosed_markers_is_cheap():
  body = {"prompt": "<|im_start|>a\n" * 4000, "completions": ["a", "b"]}
  assert _timed(lambda: parse_group_request(body, Limits())) < 1.0


@pytest.mark.parametrize("output", [
    "[The Start of Assistant A's Answer]\n" * 25000,
    "[The Start of Assistant A's Answer]\n" + "\n[The End of Assistant A's Answer] " * 20000
    + "\n[The End of Assistant B's Answer]",
    "[The Start of Assistant A's Answer]\n" + " " * 144000 + "\n[The End of Assistant B's Answer]"])
def test_pathological_gram_records_are_parsed_at_once(output):
  row = {"instruction": "[User Question]\n" + " " * 144000 + "q" + " " * 144000,
         "output": output}
  assert _timed(lambda: records.parse_unlabeled_pair(row, "f:1")) < 1.0


def test_the_official_blocks_read_as_before():
  output = ("[The Start of Assistant A's Answer]\nFour.\n[The End of Assistant A's Answer]\n\n"
            "[The Start of Assistant B's Response]\nFive.\n\n[The End of Assistant B's "
            "Response]\n")
  assert records.answer_blocks(output) == ("Four.", "Five.\n")
  assert records.answer_blocks(output.replace("[The End of Assistant B's Response]", "")) \
      is None
