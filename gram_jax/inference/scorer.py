"""Verdict-token probabilities of judging prompts, and the both-order score (docs/method.md §4).

For a pair (r1, r2) both orders are judged; at the verdict position the softmax over the
label tokens gives P(A), P(B); score(r1) = mean(P(A | r1 first), P(B | r1 second)) and
score(r2) likewise. `both_order_scores` is the one place this formula lives. Prompts are
length-bucketed and left-padded, so a handful of jitted shapes serve any input; on a mesh
the batch splits over the data axes and the weights stay sharded. A prompt is always read at
its own bucket's width, never padded further to match a longer batch-mate, so its score does
not depend on what it is batched with (the server merges requests).
"""
import concurrent.futures
import dataclasses
import functools
import math
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from gram_jax import parallel
from gram_jax.data.encode import JudgeEncoder
from gram_jax.errors import GramError
from gram_jax.inference.batching import (bucket_length, bucket_rows, bucket_widths, left_pad,
                                         row_buckets)
from gram_jax.models.decoder import Decoder, verdict_logits
from gram_jax.progress import Progress
from gram_jax.text import templates
from gram_jax.text.tokenizer import longest_token_chars, normalized_chars

Pair = tuple[str, str, str]  # (prompt, response_a, response_b)


class TooLong(GramError):
  """A judging prompt over the caller's token limit (checked before any trimming). With
  `chars`, it was refused before tokenising: `tokens` is a lower bound that `chars`
  characters imply (no token of the vocabulary covers more than a known number)."""

  def __init__(self, index: int, tokens: int, limit: int, chars: int | None = None):
    self.index, self.tokens, self.limit, self.chars = index, tokens, limit, chars
    super().__init__(f"pair {index}: {self.count()} exceeds {limit}")

  def count(self) -> str:
    if self.chars is None:
      return f"{self.tokens} tokens"
    return f"at least {self.tokens} tokens ({self.chars} characters)"


HOST_CHUNK = 8  # at most this many pairs tokenised between checks of limit and deadline


def host_chunks(count: int) -> list[tuple[int, int]]:
  """(start, end) of chunks of 1, 2, 4, then HOST_CHUNK items: a request whose first item is
  over the limit costs one item's tokenising, a long valid one few checks."""
  chunks, start, size = [], 0, 1
  while start < count:
    chunks.append((start, min(count, start + size)))
    start, size = start + size, min(2 * size, HOST_CHUNK)
  return chunks


def check_lengths(encoded: Sequence[Sequence[int]], max_tokens: int | None,
                  first_index: int) -> None:
  for i, ids in enumerate(encoded):
    if max_tokens is not None and len(ids) > max_tokens:
      raise TooLong(first_index + i, len(ids), max_tokens)


def check_characters(tokenizer: Any, texts_per_item: Sequence[Sequence[str]],
                     max_tokens: int, longest_token: int) -> None:
  """Raises TooLong for the first item whose characters alone prove it over `max_tokens`:
  a token covers at most `longest_token` characters, so n characters are at least
  n / longest_token tokens. Nothing is tokenised (a length per text, after normalising
  those long enough to matter)."""
  bound = max_tokens * longest_token
  for i, texts in enumerate(texts_per_item):
    if sum(map(len, texts)) <= bound:
      continue
    chars = sum(normalized_chars(tokenizer, text) for text in texts)
    if chars > bound:
      raise TooLong(i, math.ceil(chars / longest_token), max_tokens, chars)


def check_deadline(deadline: float | None, done: int) -> None:
  if deadline is not None and time.monotonic() >= deadline:
    raise TimeoutError(f"deadline passed after {done} pairs were tokenised")


@dataclasses.dataclass(frozen=True)
class EncodedPair:
  """Both orders of one pair as judging-prompt tokens, ready for the device."""
  first: list[int]  # response_a shown first
  second: list[int]
  tokens: int  # the longer order's length before trimming
  trimmed: bool


def as_pair(item: Any) -> Pair:
  """A (prompt, response_a, response_b) triple from a tuple or a dict with those keys."""
  if isinstance(item, dict):
    return item["prompt"], item["response_a"], item["response_b"]
  prompt, a, b = item
  return prompt, a, b


def as_pairs(items: Sequence[Any]) -> list[Pair]:
  pairs = [as_pair(p) for p in items]
  for i, pair in enumerate(pairs):
    if not all(isinstance(x, str) for x in pair):
      raise GramError(f"pair {i}: prompt and responses must be strings")
  return pairs


def both_order_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """[N, 2] scores of (response_a, response_b) from label probabilities [N, 2] with
  response_a shown first (`first`) and shown second (`second`)."""
  first, second = np.asarray(first), np.asarray(second)
  return np.stack([(first[:, 0] + second[:, 1]) / 2, (first[:, 1] + second[:, 0]) / 2], 1)


def swapped(pairs: Sequence[Pair]) -> list[Pair]:
  return [(p, b, a) for p, a, b in pairs]


@functools.partial(parallel.jit, static_argnums=(0, 4))
def _label_probs(graphdef: nnx.GraphDef, params: Any, input_ids: jax.Array,
                 attention_mask: jax.Array, label_ids: tuple[int, ...]) -> jax.Array:
  model = nnx.merge(graphdef, params)
  logits = verdict_logits(model, input_ids, attention_mask, label_ids)
  return jax.nn.softmax(logits, axis=-1)


def _ids_width(count: int) -> int:
  return max(2, 1 << (count - 1).bit_length())


@functools.partial(parallel.jit, static_argnums=(0,))
def _next_token_logprobs(graphdef: nnx.GraphDef, params: Any, input_ids: jax.Array,
                         attention_mask: jax.Array, token_ids: jax.Array) -> jax.Array:
  """log softmax over the vocabulary at each row's last position, at `token_ids` [b, k]."""
  model = nnx.merge(graphdef, params)
  hidden = model.hidden_states(input_ids, attention_mask)[:, -1]
  logprobs = jax.nn.log_softmax(model.logits(hidden), axis=-1)
  return jax.numpy.take_along_axis(logprobs, token_ids, axis=-1)


class VerdictScorer:
  """Reads P(label) at the last position of token sequences, in jitted bucketed batches."""

  def __init__(self, model: Decoder, tokenizer: Any, max_len: int = 2048, batch_size: int = 16,
               template: str = templates.GRAM_JUDGE_PROMPT, labels: Sequence[str] = ("A", "B"),
               chat_template: str | None = None, mesh: Mesh | None = None):
    self.graphdef, self.params = nnx.split(model)
    self.tokenizer, self.max_len, self.mesh = tokenizer, max_len, mesh
    self.encoder = JudgeEncoder(tokenizer, max_len, template, labels, chat_template)
    self.label_ids, self.labels = tuple(self.encoder.label_ids), tuple(labels)
    self.batch_size = parallel.round_up_to_data_parallel(batch_size, mesh)
    self.data_parallel = parallel.round_up_to_data_parallel(1, mesh)
    self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    self.compiled: dict[tuple[int, int], Any] = {}  # (rows, width) -> warm_up()'s executable

  def _plan(self, lengths: Sequence[int]) -> list[tuple[np.ndarray, int, int]]:
    """(sequence indices, rows, width) of each device batch: sequences sorted by length,
    each batch one width bucket and a power-of-two row count."""
    order = np.argsort(lengths, kind="stable")
    widths = [bucket_length(lengths[i], self.max_len) for i in order]
    plan, start = [], 0
    while start < len(order):
      end = start + 1
      while end < len(order) and end - start < self.batch_size and widths[end] == widths[start]:
        end += 1
      plan.append((order[start:end], bucket_rows(end - start, self.batch_size,
                                                 self.data_parallel), widths[start]))
      start = end
    return plan

  def _buckets(self, encoded: Sequence[Sequence[int]], progress: bool):
    """(sequence indices, ids, mask) of each device batch of `_plan`."""
    bar = Progress(len(encoded), unit="prompt", enabled=progress)
    for rows, batch, width in self._plan([len(ids) for ids in encoded]):
      yield (rows, *left_pad([encoded[i] for i in rows], batch, width, self.pad_id))
      bar.update(len(rows))
    bar.close()

  def probs_of_ids(self, encoded: Sequence[Sequence[int]], progress: bool = False) -> np.ndarray:
    """Label probabilities after each token sequence (its last token is the verdict position)."""
    probs = np.zeros((len(encoded), len(self.label_ids)), np.float32)
    for rows, ids, mask in self._buckets(encoded, progress):
      probs[rows] = np.asarray(self._readout(ids, mask))[:len(rows)]
    return probs

  def next_token_logprobs(self, encoded: Sequence[Sequence[int]],
                          token_ids: Sequence[int]) -> np.ndarray:
    """Full-vocabulary log-probabilities [N, len(token_ids)] of any tokens as the next token
    after each sequence (vLLM's generative scoring). The ids travel as data, padded to a
    power of two, so one program per (rows, width, ids bucket) serves every label set."""
    width = _ids_width(len(token_ids))
    logprobs = np.zeros((len(encoded), len(token_ids)), np.float32)
    for rows, ids, mask in self._buckets(encoded, False):
      wanted = np.zeros((ids.shape[0], width), np.int32)
      wanted[:, :len(token_ids)] = token_ids
      out = _next_token_logprobs(self.graphdef, self.params, parallel.put_batch(ids, self.mesh),
                                 parallel.put_batch(mask, self.mesh),
                                 parallel.put_batch(wanted, self.mesh))
      logprobs[rows] = np.asarray(out)[:len(rows), :len(token_ids)]
    return logprobs

  def logprob_shapes(self, lengths: Sequence[int], count: int) -> set[tuple[int, int, int]]:
    """The (rows, width, ids) programs `next_token_logprobs` runs for sequences of these
    lengths and `count` token ids (a server admits new ones at a bounded rate)."""
    return {(rows, width, _ids_width(count)) for _, rows, width in self._plan(lengths)}

  def label_probs(self, triples: Sequence[Pair],
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """P(label) at the verdict position of each judging prompt [N, labels], and which
    prompts had to be trimmed to max_len."""
    encoded, trimmed = self.encoder.encode_many(triples)
    return self.probs_of_ids(encoded, progress), trimmed

  def order_probs(self, pairs: Sequence[Pair], progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label probabilities with response_a first [N, 2], with it second [N, 2], and
    whether either order was trimmed [N]."""
    probs, trimmed = self.label_probs(list(pairs) + swapped(pairs), progress)
    n = len(pairs)
    return probs[:n], probs[n:], np.asarray(trimmed[:n] | trimmed[n:], bool)

  @functools.cached_property
  def longest_token(self) -> int:
    return longest_token_chars(self.encoder.tokenizer)

  def encode_pairs(self, pairs: Sequence[Pair], max_tokens: int | None = None,
                   deadline: float | None = None) -> list[EncodedPair]:
    """Both orders of each pair tokenised once (host work a server does off its device
    thread), a few pairs at a time. Raises TooLong for the first pair over max_tokens (by
    its characters, else its untrimmed prompt) before later pairs are tokenised, and
    TimeoutError once `deadline` (time.monotonic()) passes; prompts over max_len are
    trimmed."""
    pairs = list(pairs)
    if max_tokens is not None:
      check_characters(self.encoder.tokenizer, pairs, max_tokens, self.longest_token)
    result = []
    for start, end in host_chunks(len(pairs)):
      check_deadline(deadline, start)
      chunk = pairs[start:end]
      shown = self.encoder.encode_all(chunk)  # one order first: an over-long pair is
      check_lengths(shown, max_tokens, start)  # over in either, so the other waits
      check_deadline(deadline, start)
      other = self.encoder.encode_all(swapped(chunk))
      check_lengths(other, max_tokens, start)
      encoded, trimmed = self.encoder.trim_long(chunk + swapped(chunk), shown + other)
      n = len(chunk)
      result += [EncodedPair(encoded[i], encoded[n + i], max(len(shown[i]), len(other[i])),
                             bool(trimmed[i] | trimmed[n + i])) for i in range(n)]
    return result

  def score_encoded(self, encoded: Sequence[EncodedPair], progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Both-order scores [N, 2] of encoded pairs and whether each was trimmed [N]."""
    probs = self.probs_of_ids([e.first for e in encoded] + [e.second for e in encoded],
                              progress)
    n = len(encoded)
    return both_order_scores(probs[:n], probs[n:]), np.array([e.trimmed for e in encoded], bool)

  def _readout(self, ids: np.ndarray, mask: np.ndarray) -> jax.Array:
    args = (parallel.put_batch(ids, self.mesh), parallel.put_batch(mask, self.mesh))
    compiled = self.compiled.get(ids.shape)
    if compiled is not None:
      return compiled(self.params, *args)
    return _label_probs(self.graphdef, self.params, *args, self.label_ids)

  def warm_up(self) -> int:
    """Compiles, without running, the readout of every (rows, width) bucket a call can pick,
    and keeps the executables: no request then waits for a compile, a one-pair request still
    runs a two-row batch, and a restart reads every program back from the persistent
    compilation cache. Shapes are traced here while earlier ones compile on other threads.
    Returns how many shapes."""
    shapes = [(rows, width) for rows in row_buckets(self.batch_size, self.data_parallel)
              for width in bucket_widths(self.max_len)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      compiling = [pool.submit(self._lower(*shape).compile) for shape in shapes]
      self.compiled.update(zip(shapes, [c.result() for c in compiling]))
    return len(shapes)

  def _lower(self, rows: int, width: int) -> Any:
    ids, mask = left_pad([], rows, width, self.pad_id)
    return _label_probs.lower(self.graphdef, self.params, parallel.put_batch(ids, self.mesh),
                              parallel.put_batch(mask, self.mesh), self.label_ids)
