"""Batched generation: one jitted prefill + KV-cache decode loop, static bucketed shapes.

Prompts are left-padded to a length bucket so every row writes its next token at the same
cache index; decoding runs in a `lax.while_loop` that stops when every row has finished
(EOS or a stop sequence) or at max_new_tokens. Each row samples from its own key, derived
from (seed, the prompt's index), so a prompt's sample does not depend on its batch-mates.

Sampling parameters and stop sequences are traced inputs of fixed shape (stops go in a table
of at least 4 rows by 8 tokens, rounded up to powers of two), so a server's clients cannot make
it compile per temperature or stop string: the compiled shapes are bounded by the batch,
prompt, length and stop-table buckets, and each new one is logged.
"""
import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from gram_jax import parallel
from gram_jax.errors import GramError
from gram_jax.inference.batching import bucket_length, bucket_rows, left_pad
from gram_jax.models.decoder import Decoder, positions_from_mask

_MASKED = -1e30
_MIN_STOP_ROWS, _MIN_STOP_TOKENS = 4, 8


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sampling:
  """temperature 0 = greedy; top_k 0 = off; top_p 1 = off. A pytree: jitted code receives
  the values as traced scalars."""
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0

  def traced(self) -> "Sampling":
    """The same settings as fixed-dtype arrays: one compiled shape for every value."""
    return Sampling(np.float32(self.temperature), np.int32(self.top_k), np.float32(self.top_p))


class PromptTooLong(GramError):
  """A prompt over the generator's budget: callers cut by fields before they generate."""

  def __init__(self, field: str, index: int, tokens: int, limit: int):
    super().__init__(f"{field}[{index}]: {tokens} prompt tokens exceed the generator's "
                     f"max_prompt_len={limit} (trim the prompt's fields before generating)")
    self.field, self.index, self.tokens, self.limit = field, index, tokens, limit


@dataclasses.dataclass
class Generation:
  text: str
  token_ids: list[int]
  finish_reason: str  # "eos", "stop" or "length"


def filter_logits(logits: jax.Array, sampling: Sampling) -> jax.Array:
  """Temperature, then top-k, then top-p (nucleus) masking of [batch, vocab] logits; the
  settings may be traced (the sort runs only when a cut-off is on)."""
  logits = logits.astype(jnp.float32) / sampling.temperature
  vocab = logits.shape[-1]

  def cut(logits: jax.Array) -> jax.Array:
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]
    k = jnp.where(sampling.top_k > 0, jnp.minimum(sampling.top_k, vocab), vocab)
    kth = jax.lax.dynamic_slice_in_dim(ordered, k - 1, 1, axis=1)
    ordered = jnp.where(jnp.arange(vocab) < k, ordered, _MASKED)
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
    kept = (before < sampling.top_p) | (sampling.top_p >= 1.0)
    nucleus = jnp.min(jnp.where(kept, ordered, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits < jnp.maximum(kth, nucleus), _MASKED, logits)

  active = (sampling.top_k > 0) | (sampling.top_p < 1.0)
  return jax.lax.cond(active, cut, lambda x: x, logits)


def next_tokens(logits: jax.Array, row_keys: jax.Array, step: jax.Array,
                sampling: Sampling, greedy: bool | None = None) -> jax.Array:
  """`greedy` (static) says whether temperature is 0; None reads it from `sampling`."""
  if greedy if greedy is not None else sampling.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  filtered = filter_logits(logits, sampling)
  keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(row_keys)
  return jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)


def stop_table(stops: Sequence[Sequence[int]], max_new: int) -> tuple[np.ndarray, np.ndarray]:
  """Stop sequences right-aligned in a [rows, tokens] table (-1 pads; rows and tokens powers
  of two, at least 4 and 8) and their lengths; one longer than `max_new` can never end a
  generation and is left out."""
  stops = [list(s) for s in stops if 0 < len(s) <= max_new]
  rows = max(_MIN_STOP_ROWS, 1 << max(len(stops) - 1, 0).bit_length())
  width = max(_MIN_STOP_TOKENS, 1 << (max(map(len, stops), default=1) - 1).bit_length())
  table = np.full((rows, width), -1, np.int32)
  lengths = np.zeros(rows, np.int32)
  for i, stop in enumerate(stops):
    table[i, width - len(stop):] = stop
    lengths[i] = len(stop)
  return table, lengths


def _ends_with_stop(out: jax.Array, step: jax.Array, table: jax.Array,
                    lengths: jax.Array) -> jax.Array:
  """Rows whose generated tokens (up to `step`) end with one of the table's stop sequences."""
  width = table.shape[1]
  index = step + 1 - width + jnp.arange(width)  # the last `width` positions of `out`
  window = jnp.take(out, jnp.clip(index, 0, out.shape[1] - 1), axis=1)  # [batch, width]
  used = jnp.arange(width)[None, :] >= (width - lengths)[:, None]  # [stops, width]
  same = (window[:, None, :] == table[None]) & (index >= 0)
  return jnp.any(jnp.all(~used[None] | same, axis=-1) & (lengths > 0)[None], axis=1)


@functools.partial(parallel.jit, static_argnums=(0, 5, 7, 8, 11))
def _generate(graphdef: nnx.GraphDef, params: Any, prompt_ids: jax.Array,
              prompt_mask: jax.Array, row_keys: jax.Array, max_new: int, sampling: Sampling,
              greedy: bool, eos_ids: tuple[int, ...], stops: jax.Array, stop_lengths: jax.Array,
              pad_id: int):
  model: Decoder = nnx.merge(graphdef, params)
  batch, prompt_len = prompt_ids.shape
  total = prompt_len + max_new
  cache = model.init_cache(batch, total)
  prompt_segments = prompt_mask.astype(jnp.int32)
  key_segments = jnp.concatenate([prompt_segments, jnp.zeros((batch, max_new), jnp.int32)], 1)
  positions = positions_from_mask(prompt_mask)
  hidden, cache = model.forward_cached(prompt_ids, positions, prompt_segments, key_segments,
                                       cache, 0)
  logits = model.logits(hidden[:, -1:])[:, 0]
  eos = jnp.asarray(eos_ids, jnp.int32)

  def body(carry):
    step, logits, cache, key_segments, done, out, reason, length, position = carry
    token = jnp.where(done, pad_id, next_tokens(logits, row_keys, step, sampling, greedy))
    out = out.at[:, step].set(token)
    is_eos = jnp.isin(token, eos) & ~done
    is_stop = _ends_with_stop(out, step, stops, stop_lengths) & ~done & ~is_eos
    reason = jnp.where(is_eos, 1, jnp.where(is_stop, 2, reason))
    length = jnp.where(is_eos | is_stop, step + 1, length)
    done = done | is_eos | is_stop
    index = prompt_len + step
    key_segments = key_segments.at[:, index].set(1)
    hidden, cache = model.forward_cached(token[:, None], position[:, None],
                                         jnp.ones((batch, 1), jnp.int32), key_segments, cache,
                                         index)
    return (step + 1, model.logits(hidden)[:, 0], cache, key_segments, done, out, reason,
            length, position + 1)

  def cond(carry):
    return (carry[0] < max_new) & ~jnp.all(carry[4])

  start_position = jnp.sum(prompt_mask, axis=1).astype(jnp.int32)
  carry = (jnp.int32(0), logits, cache, key_segments, jnp.zeros(batch, bool),
           jnp.full((batch, max_new), pad_id, jnp.int32), jnp.zeros(batch, jnp.int32),
           jnp.full(batch, max_new, jnp.int32), start_position)
  carry = jax.lax.while_loop(cond, body, carry)
  return carry[5], carry[6], carry[7]


@functools.partial(parallel.jit, static_argnums=(0, 4))
def _token_logprobs(graphdef: nnx.GraphDef, params: Any, ids: jax.Array, mask: jax.Array,
                    top_k: int):
  """log p(ids[t] | ids[:t]) for every t >= 1 of left-padded rows [batch, width - 1], and
  the top_k most likely tokens there (log-probabilities and ids [batch, width - 1, top_k])."""
  logits = nnx.merge(graphdef, params)(ids, mask)[:, :-1]
  logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  chosen = jnp.take_along_axis(logprobs, ids[:, 1:, None], axis=-1)[..., 0]
  if not top_k:
    return chosen, None, None
  top, top_ids = jax.lax.top_k(logprobs, top_k)
  return chosen, top, top_ids


@dataclasses.dataclass
class TokenLogprobs:
  """Per continuation token: its log-probability, and the top_k alternatives."""
  logprobs: np.ndarray  # [tokens]
  top_logprobs: np.ndarray | None  # [tokens, top_k]
  top_ids: np.ndarray | None  # [tokens, top_k]


class Generator:
  """Generates continuations of text prompts (already chat-formatted) in jitted batches."""

  def __init__(self, model: Decoder, tokenizer: Any, batch_size: int = 16,
               max_prompt_len: int = 2048, mesh: Mesh | None = None):
    self.graphdef, self.params = nnx.split(model)
    self.tokenizer, self.max_prompt_len, self.mesh = tokenizer, max_prompt_len, mesh
    self.batch_size = parallel.round_up_to_data_parallel(batch_size, mesh)
    self.data_parallel = parallel.round_up_to_data_parallel(1, mesh)
    self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = model.config.eos_token_id
    eos = set(eos if isinstance(eos, tuple) else ([eos] if eos is not None else []))
    if tokenizer.eos_token_id is not None:
      eos.add(tokenizer.eos_token_id)
    self.eos_ids = tuple(sorted(eos))
    self.compiled_shapes: set[tuple] = set()
    # Called with (kind, shape) before a shape's first compile; may raise to refuse it (a
    # server bounds how fast its clients can make it compile).
    self.admit_shape: Callable[[str, tuple], None] = lambda kind, shape: None

  def generate(self, prompts: Sequence[str | Sequence[int]], max_new_tokens: int = 256,
               sampling: Sampling = Sampling(), seed: int = 0,
               stop: Sequence[str] = (), first_index: int = 0,
               field: str = "prompts") -> list[Generation]:
    """One Generation per prompt, in order. A prompt over max_prompt_len is never cut here
    (a cut from the left loses the chat header and the instruction): it raises PromptTooLong
    naming the caller's `field`. Prompt i samples with key (seed, first_index + i), so work
    split into chunks samples exactly as in one call."""
    encoded = [list(p) if not isinstance(p, str) else
               self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    for i, ids in enumerate(encoded):
      if len(ids) > self.max_prompt_len:
        raise PromptTooLong(field, first_index + i, len(ids), self.max_prompt_len)
    stops, stop_lengths = stop_table(
        [self.tokenizer.encode(s, add_special_tokens=False) for s in stop if s], max_new_tokens)
    greedy = float(sampling.temperature) == 0.0
    base = jax.random.key(seed)
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    results: list[Generation | None] = [None] * len(encoded)
    for start in range(0, len(order), self.batch_size):
      rows = order[start:start + self.batch_size]
      width = bucket_length(max(len(encoded[i]) for i in rows), self.max_prompt_len)
      batch = bucket_rows(len(rows), self.batch_size, self.data_parallel)
      ids, mask = left_pad([encoded[i] for i in rows], batch, width, self.pad_id)
      keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
          jnp.asarray(np.pad(rows, (0, batch - len(rows))) + first_index))
      self._note_shape("generate", (batch, width, max_new_tokens, stops.shape, greedy))
      out, reasons, lengths = jax.device_get(_generate(
          self.graphdef, self.params, parallel.put_batch(ids, self.mesh),
          parallel.put_batch(mask, self.mesh), keys, max_new_tokens, sampling.traced(), greedy,
          self.eos_ids, stops, stop_lengths, self.pad_id))
      for r, i in enumerate(rows):
        results[i] = self._finish(out[r, :lengths[r]], int(reasons[r]), stop)
    return results

  def _note_shape(self, kind: str, shape: tuple) -> None:
    if (kind, shape) not in self.compiled_shapes:
      self.admit_shape(kind, shape)
      self.compiled_shapes.add((kind, shape))
      logging.info("%s: shape %d of this generator: %s", kind, len(self.compiled_shapes), shape)

  def sequence_logprobs(self, prompts: Sequence[Sequence[int]],
                        continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """Sum of log p(continuation | prompt) for each pair of token lists."""
    return np.array([float(r.logprobs.sum())
                     for r in self.continuation_logprobs(prompts, continuations)])

  def continuation_logprobs(self, prompts: Sequence[Sequence[int]],
                            continuations: Sequence[Sequence[int]],
                            top_k: int = 0) -> list[TokenLogprobs]:
    """Log-probabilities of each continuation's tokens after its prompt (the model's own
    distribution, before any sampling temperature), with the top_k alternatives."""
    rows = [list(p) + list(c) for p, c in zip(prompts, continuations)]
    results: list[TokenLogprobs | None] = [None] * len(rows)
    order = np.argsort([len(r) for r in rows], kind="stable")
    for start in range(0, len(order), self.batch_size):
      chunk = order[start:start + self.batch_size]
      width = bucket_length(max(len(rows[i]) for i in chunk), 1 << 30)
      batch = bucket_rows(len(chunk), self.batch_size, self.data_parallel)
      ids, mask = left_pad([rows[i] for i in chunk], batch, width, self.pad_id)
      self._note_shape("logprobs", (batch, width, top_k))
      chosen, top, top_ids = jax.device_get(_token_logprobs(
          self.graphdef, self.params, parallel.put_batch(ids, self.mesh),
          parallel.put_batch(mask, self.mesh), top_k))
      for r, i in enumerate(chunk):
        span = slice(width - 1 - len(continuations[i]), width - 1)
        results[i] = TokenLogprobs(chosen[r, span], None if top is None else top[r, span],
                                   None if top_ids is None else top_ids[r, span])
    return results

  def _finish(self, tokens: np.ndarray, reason: int, stop: Sequence[str]) -> Generation:
    """Drops the EOS token, decodes, and cuts the text at the first stop string."""
    ids = [int(t) for t in tokens]
    if reason == 1:
      ids = ids[:-1]
    text = self.tokenizer.decode(ids, skip_special_tokens=False)
    finish = {0: "length", 1: "eos", 2: "stop"}[reason]
    for s in stop:
      cut = text.find(s) if s else -1
      if cut >= 0:
        text, finish = text[:cut], "stop"
    return Generation(text, ids, finish)
