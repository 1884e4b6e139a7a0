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
               trim_order: Sequence[Sequence[str]] = truncation.DEFAULT_ORDER):
    self.tokenizer, self.cutoff_len, self.template = tokenizer, cutoff_len, template
    self.reply, self.values, self.chat_template = reply, values, chat_template
    self.trim_order = trim_order
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
                                              self.trim_order)
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


class JudgeEncoder:
  """The judging prompt as tokens: template + chat template, trimmed to fit, verdict
  position last.

  Encoding tokenises the whole rendered string at once (as the official scorer does), so
  an untrimmed pair gets exactly the official tokens; only a pair over the budget is
  trimmed, responses first, and the template's markers and the trailing verdict position
  are kept.
  """
  def __init__(self, tokenizer: Any, max_len: int, template: str = templates.GRAM_JUDGE_PROMPT,
               labels: Sequence[str] = ("A", "B"), chat_template: str | None = None):
    self.tokenizer, self.max_len, self.template = tokenizer, max_len, template
    self.chat_template = chat_template
    self.label_ids = label_token_ids(tokenizer, labels)

  def text(self, prompt: str, response_a: str, response_b: str) -> str:
    message = templates.fill(self.template, prompt, response_a, response_b)
    return render_user_turn(self.tokenizer, message, self.chat_template)

  def _ids(self, fields: dict[str, str]) -> list[int]:
    return self.encode_all([(fields["prompt"], fields["response_a"], fields["response_b"])])[0]

  def encode_all(self, triples: Sequence[tuple[str, str, str]]) -> list[list[int]]:
    """Untrimmed token ids of many judging prompts; user text stays plain text."""
    values = [{"input": p, "response_a": a, "response_b": b} for p, a, b in triples]
    return encode_user_turns(self.tokenizer, self.template, values, self.chat_template)

  def __call__(self, prompt: str, response_a: str, response_b: str) -> tuple[list[int], bool]:
    """Token ids ending at the verdict position, and whether the pair was trimmed."""
    fields = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    ids = self._ids(fields)
    return (ids, False) if len(ids) <= self.max_len else self.trim(fields)

  def trim(self, fields: dict[str, str]) -> tuple[list[int], bool]:
    fields, _ = truncation.fit_fields(self.tokenizer, fields, lambda f: len(self._ids(f)),
                                      self.max_len)
    return self._ids(fields), True

  def encode_many(self, triples: Sequence[tuple[str, str, str]]
                  ) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of many judging prompts (one batched tokenizer call) and which were trimmed."""
    return self.trim_long(triples, self.encode_all(triples))

  def trim_long(self, triples: Sequence[tuple[str, str, str]], encoded: list[list[int]]
                ) -> tuple[list[list[int]], np.ndarray]:
    """`encoded` (encode_all of `triples`) with every prompt over max_len trimmed to fit, and
    which were trimmed."""
    encoded = list(encoded)
    trimmed = np.zeros(len(triples), bool)
    for i, ids in enumerate(encoded):
      if len(ids) > self.max_len:
        encoded[i], trimmed[i] = self.trim(dict(zip(("prompt", "response_a", "response_b"),
                                                    triples[i])))
    return encoded, trimmed
