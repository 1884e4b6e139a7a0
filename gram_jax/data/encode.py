"""Every encoder from records to token ids: training examples (token ids plus how many leading
tokens are prompt) and the judging prompt that scoring and verdict training share."""
import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from gram_jax.data.records import UnlabeledPair
from gram_jax.errors import GramError
from gram_jax.text import templates, truncation
from gram_jax.text.tokenizer import (encode_plain, encode_user_turn, encode_user_turns,
                                     label_token_ids, render_user_turn)


@dataclasses.dataclass(frozen=True)
class Example:
  ids: np.ndarray  # int32 [length]
  prompt_len: int  # tokens before the first trained token
  trimmed: bool = False
  label: int = -1  # verdict examples: index of the better response's label (0 = A)
  where: str = ""  # the record it came from (file:line), for messages about its batch


Fields = dict[str, str]


def pair_values(fields: Fields) -> dict[str, str]:
  """The judging prompt's slots from a record's fields."""
  return {"input": fields["prompt"], "response_a": fields["response_a"],
          "response_b": fields["response_b"]}


class ReplyEncoder:
  """A user turn and the trained assistant reply, built from a record's fields.

  The user turn is `template` filled with `values(fields)`; `reply(fields)` is the trained
  text. Prompt tokens are masked, the reply ends with EOS, record text is tokenised as plain
  text (a '<|im_end|>' in it is not a control token), and an example over `cutoff_len` has
  its fields trimmed in `trim_order` (responses, then question, by default) so no template
  marker is cut.
  """

  def __init__(self, tokenizer: Any, cutoff_len: int, template: str,
               reply: Callable[[Fields], str],
               values: Callable[[Fields], dict[str, str]] = pair_values,
               chat_template: str | None = None,
               trim_order: Sequence[Sequence[str]] = truncation.DEFAULT_ORDER,
               budget_name: str = "config.data.cutoff_len"):
    self.tokenizer, self.cutoff_len, self.template = tokenizer, cutoff_len, template
    self.reply, self.values, self.chat_template = reply, values, chat_template
    self.trim_order, self.budget_name = trim_order, budget_name
    if tokenizer.eos_token_id is None:
      raise GramError("tokenizer has no eos token; the trained reply must end with one")

  def _parts(self, fields: Fields) -> tuple[list[int], list[int]]:
    prompt = encode_user_turn(self.tokenizer, self.template, self.values(fields),
                              self.chat_template)
    return prompt, encode_plain(self.tokenizer, self.reply(fields)) + [
        self.tokenizer.eos_token_id]

  def __call__(self, fields: Fields, where: str = "") -> Example:
    measure = lambda f: sum(map(len, self._parts(f)))
    try:
      fields, trimmed = truncation.fit_fields(self.tokenizer, fields, measure, self.cutoff_len,
                                              self.trim_order, self.budget_name)
    except GramError as e:
      raise GramError(f"{where}: {e}") from None
    prompt_ids, reply_ids = self._parts(fields)
    return Example(np.asarray(prompt_ids + reply_ids, np.int32), len(prompt_ids), trimmed,
                   where=where)


def pretrain_encoder(tokenizer: Any, cutoff_len: int,
                     chat_template: str | None = None) -> Callable[[UnlabeledPair], Example]:
  """GRAM stage 1: the question in the user turn, both responses as the trained reply."""
  encoder = ReplyEncoder(
      tokenizer, cutoff_len, templates.PRETRAIN_INSTRUCTION,
      reply=lambda f: templates.fill(templates.PRETRAIN_OUTPUT, "", f["response_a"],
                                     f["response_b"]),
      values=lambda f: {"input": f["prompt"]}, chat_template=chat_template)
  return lambda pair: encoder({"prompt": pair.prompt, "response_a": pair.response_a,
                               "response_b": pair.response_b}, pair.where)


@dataclasses.dataclass
class TokenizedSet:
  """All examples of one host in two flat arrays (4 bytes a token), for fast packing."""
  tokens: np.ndarray   # int32, every example concatenated
  offsets: np.ndarray  # int64 [n + 1]
  prompt_lens: np.ndarray  # int32 [n]
  labels: np.ndarray  # int32 [n], -1 for LM examples
  trimmed: int = 0
  sources: tuple[str, ...] = ()  # each example's record (file:line)

  @classmethod
  def build(cls, examples: Sequence[Example]) -> "TokenizedSet":
    lengths = np.asarray([len(e.ids) for e in examples], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = (np.concatenate([e.ids for e in examples]) if examples
              else np.zeros(0, np.int32))
    return cls(tokens.astype(np.int32), offsets,
               np.asarray([e.prompt_len for e in examples], np.int32),
               np.asarray([e.label for e in examples], np.int32),
               sum(e.trimmed for e in examples), tuple(e.where for e in examples))

  def __len__(self) -> int:
    return len(self.prompt_lens)

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def source(self, index: int) -> str:
    return (self.sources[index] if index < len(self.sources) else "") or f"example {index}"

  def example(self, index: int) -> tuple[np.ndarray, int]:
    return self.tokens[self.offsets[index]:self.offsets[index + 1]], int(self.prompt_lens[index])


class PromptEncoder:
  """A user turn (`template` filled from a record's fields, chat header and generation
  prompt) as tokens that fit `max_len`, for generation and scoring.

  A prompt over the budget is cut by fields, never from the left: the responses shrink first
  in proportion to their lengths, then the question; the chat header, the template's
  instructions and markers, the slots that are not cut (the label a prover must prove) and
  the turn's end (the verdict position) stay whole. The whole rendered string is tokenised
  at once (as the official scorer does), so an untrimmed prompt gets exactly the official
  tokens. `budget_name` names the setting in errors (`config.data.cutoff_len`).
  """

  def __init__(self, tokenizer: Any, max_len: int, template: str,
               chat_template: str | None = None,
               values: Callable[[Fields], dict[str, str]] = pair_values,
               trim_order: Sequence[Sequence[str]] = truncation.DEFAULT_ORDER,
               budget_name: str = "max_len"):
    self.tokenizer, self.max_len, self.template = tokenizer, max_len, template
    self.chat_template, self.values, self.trim_order = chat_template, values, trim_order
    self.budget_name = budget_name

  def untrimmed(self, records: Sequence[Fields]) -> list[list[int]]:
    """Token ids of each record's prompt as it is; user text stays plain text."""
    return encode_user_turns(self.tokenizer, self.template, [self.values(f) for f in records],
                             self.chat_template)

  def fit(self, records: Sequence[Fields], encoded: Sequence[list[int]]
          ) -> tuple[list[list[int]], np.ndarray]:
    """`encoded` (untrimmed ids of `records`) with every prompt over max_len cut by fields,
    and which were cut."""
    encoded = list(encoded)
    trimmed = np.zeros(len(records), bool)
    for i, ids in enumerate(encoded):
      if len(ids) > self.max_len:
        fields, _ = truncation.fit_fields(
            self.tokenizer, dict(records[i]), lambda f: len(self.untrimmed([f])[0]),
            self.max_len, self.trim_order, self.budget_name)
        encoded[i], trimmed[i] = self.untrimmed([fields])[0], True
    return encoded, trimmed

  def encode(self, records: Sequence[Fields]) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of each record's prompt within max_len (one batched tokenizer call for
    those that fit), and which had to be cut."""
    return self.fit(records, self.untrimmed(records))


def triple_fields(triples: Sequence[tuple[str, str, str]]) -> list[Fields]:
  return [{"prompt": p, "response_a": a, "response_b": b} for p, a, b in triples]


class JudgeEncoder(PromptEncoder):
  """The judging prompt of (prompt, response_a, response_b) triples, verdict position last,
  with the verdict labels' token ids."""

  def __init__(self, tokenizer: Any, max_len: int, template: str = templates.GRAM_JUDGE_PROMPT,
               labels: Sequence[str] = ("A", "B"), chat_template: str | None = None,
               budget_name: str = "max_len"):
    super().__init__(tokenizer, max_len, template, chat_template, budget_name=budget_name)
    self.label_ids = label_token_ids(tokenizer, labels)

  def text(self, prompt: str, response_a: str, response_b: str) -> str:
    message = templates.fill(self.template, prompt, response_a, response_b)
    return render_user_turn(self.tokenizer, message, self.chat_template)

  def encode_all(self, triples: Sequence[tuple[str, str, str]]) -> list[list[int]]:
    """Untrimmed token ids of many judging prompts."""
    return self.untrimmed(triple_fields(triples))

  def __call__(self, prompt: str, response_a: str, response_b: str) -> tuple[list[int], bool]:
    """Token ids ending at the verdict position, and whether the pair was trimmed."""
    encoded, trimmed = self.encode_many([(prompt, response_a, response_b)])
    return encoded[0], bool(trimmed[0])

  def encode_many(self, triples: Sequence[tuple[str, str, str]]
                  ) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of many judging prompts within max_len, and which were trimmed."""
    return self.encode(triple_fields(triples))

  def trim_long(self, triples: Sequence[tuple[str, str, str]], encoded: list[list[int]]
                ) -> tuple[list[list[int]], np.ndarray]:
    """`encoded` (encode_all of `triples`) with every prompt over max_len trimmed to fit."""
    return self.fit(triple_fields(triples), encoded)
