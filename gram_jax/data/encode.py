"""Tokenise records into training examples: token ids plus how many leading tokens are prompt."""
import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from gram_jax import templates, truncation
from gram_jax.data.records import UnlabeledPair
from gram_jax.errors import GramError
from gram_jax.tokenizer import render_user_turn


@dataclasses.dataclass(frozen=True)
class Example:
  ids: np.ndarray  # int32 [length]
  prompt_len: int  # tokens before the first trained token
  trimmed: bool = False
  label: int = -1  # verdict examples: index of the better response's label (0 = A)
  where: str = ""  # the record it came from (file:line), for messages about its batch


Fields = dict[str, str]


class ReplyEncoder:
  """A user turn and the trained assistant reply, built from a record's fields.

  `user(fields)` and `reply(fields)` render the texts; prompt tokens are masked, the reply
  ends with EOS, and an example over `cutoff_len` has its responses (then question) trimmed
  so no template marker is cut.
  """

  def __init__(self, tokenizer: Any, cutoff_len: int, user: Callable[[Fields], str],
               reply: Callable[[Fields], str], chat_template: str | None = None):
    self.tokenizer, self.cutoff_len = tokenizer, cutoff_len
    self.user, self.reply, self.chat_template = user, reply, chat_template
    if tokenizer.eos_token_id is None:
      raise GramError("tokenizer has no eos token; the trained reply must end with one")

  def _parts(self, fields: Fields) -> tuple[list[int], list[int]]:
    prompt_text = render_user_turn(self.tokenizer, self.user(fields), self.chat_template)
    encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False)
    return encode(prompt_text), encode(self.reply(fields)) + [self.tokenizer.eos_token_id]

  def __call__(self, fields: Fields, where: str = "") -> Example:
    measure = lambda f: sum(map(len, self._parts(f)))
    try:
      fields, trimmed = truncation.fit_fields(self.tokenizer, fields, measure, self.cutoff_len)
    except GramError as e:
      raise GramError(f"{where}: {e}") from None
    prompt_ids, reply_ids = self._parts(fields)
    return Example(np.asarray(prompt_ids + reply_ids, np.int32), len(prompt_ids), trimmed,
                   where=where)


def pretrain_encoder(tokenizer: Any, cutoff_len: int,
                     chat_template: str | None = None) -> Callable[[UnlabeledPair], Example]:
  """GRAM stage 1: the question in the user turn, both responses as the trained reply."""
  encoder = ReplyEncoder(
      tokenizer, cutoff_len,
      user=lambda f: templates.fill(templates.PRETRAIN_INSTRUCTION, f["prompt"]),
      reply=lambda f: templates.fill(templates.PRETRAIN_OUTPUT, "", f["response_a"],
                                     f["response_b"]),
      chat_template=chat_template)
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
