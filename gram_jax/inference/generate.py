"""Batched generation: jitted prefills and a KV-cache decode loop over slots, static shapes.

Prompts, shortest first, go through waves of prompt slots as wide as the wave's longest
prompt; each is left-padded and prefilled once into a slot, and each slot holds `samples`
rows (identical prompts share a slot: voting@k, a chat request's n), which read the prompt's
keys once and write their own generated keys into a ring of max_new_tokens slots. Decoding runs in a `lax.while_loop` until every row has
finished (EOS, a stop sequence or max_new_tokens) or enough prompt slots are free to admit
waiting prompts. Each row samples from its own key, derived from (seed, the prompt's index)
and its token count, so a prompt's sample depends neither on its batch-mates nor on when it
was admitted.

Sampling parameters and stop sequences are traced inputs of fixed shape (stops go in a table
of at least 4 rows by 8 tokens, rounded up to powers of two), so a server's clients cannot make
it compile per temperature or stop string: the compiled shapes are bounded by the batch,
prompt, length and stop-table buckets, and each new one is logged.
"""
import collections
import dataclasses
import functools
import math
from typing import Any, Callable, Iterator, Sequence

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
# Prompts decoded through one set of slots (a wave) are as wide as its longest: a wave ends at
# a length bucket once it holds _MIN_WAVE slots' worth of prompts (enough to refill from),
# and at _MAX_WAVE slots' worth (measured: BENCHMARKS.md, "Generation at rationale lengths").
_MIN_WAVE, _MAX_WAVE = 2, 8


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
  """`step`: the tokens each row has generated (a scalar or [batch]); `greedy` (static) says
  whether temperature is 0; None reads it from `sampling`."""
  if greedy if greedy is not None else sampling.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  filtered = filter_logits(logits, sampling)
  keys = jax.vmap(jax.random.fold_in)(row_keys, jnp.broadcast_to(step, row_keys.shape))
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


def _ends_with_stop(out: jax.Array, generated: jax.Array, table: jax.Array,
                    lengths: jax.Array) -> jax.Array:
  """Rows whose first `generated` [batch] tokens end with one of the table's stop sequences."""
  width = table.shape[1]
  index = generated[:, None] - width + jnp.arange(width)  # each row's last `width` positions
  window = jnp.take_along_axis(out, jnp.clip(index, 0, out.shape[1] - 1), axis=1)
  used = jnp.arange(width)[None, :] >= (width - lengths)[:, None]  # [stops, width]
  same = (window[:, None, :] == table[None]) & (index >= 0)[:, None, :]
  return jnp.any(jnp.all(~used[None] | same, axis=-1) & (lengths > 0)[None], axis=1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Slots:
  """The decoding state of `prompts` prompt slots x `samples` rows each (rows = prompts x
  samples, a prompt's samples adjacent). A slot is free when all its rows are done."""
  prefix: list  # per layer, the prompts' keys/values [prompts, kv_heads, width, head_dim]
  prefix_ok: jax.Array  # [prompts, width]: real prompt tokens
  prefix_pos: jax.Array  # [prompts, width]: their positions (sliding windows read them)
  suffix: list  # per layer, each row's generated keys/values [rows, kv_heads, max_new, head_dim]
  suffix_ok: jax.Array  # [rows, max_new]: slots written by the row now there
  suffix_pos: jax.Array  # [rows, max_new]: the positions of the tokens written there
  logits: jax.Array  # [rows, vocab]: the next token's logits
  position: jax.Array  # [rows]: the next token's position
  generated: jax.Array  # [rows]: tokens generated (and the next sampling step)
  done: jax.Array  # [rows]
  reason: jax.Array  # [rows]: 0 length, 1 eos, 2 stop
  out: jax.Array  # [rows, max_new]
  keys: jax.Array  # [rows, 2]: the rows' sampling keys (raw key data)
  ring: jax.Array  # the suffix slot the next token writes, mod max_new (shared by every row)


@functools.partial(parallel.jit, static_argnums=(0, 2, 3, 4, 5, 6))
def _empty_slots(graphdef: nnx.GraphDef, params: Any, prompts: int, samples: int, width: int,
                 max_new: int, pad_id: int) -> _Slots:
  model: Decoder = nnx.merge(graphdef, params)
  c, rows = model.config, prompts * samples
  prefix_shape = (prompts, c.num_kv_heads, width, c.head_dim)
  return _Slots(
      prefix=[{"k": jnp.zeros(prefix_shape, c.dtype), "v": jnp.zeros(prefix_shape, c.dtype)}
              for _ in range(c.num_layers)],
      prefix_ok=jnp.zeros((prompts, width), bool), prefix_pos=jnp.zeros((prompts, width), jnp.int32),
      suffix=model.empty_suffix(rows, max_new), suffix_ok=jnp.zeros((rows, max_new), bool),
      suffix_pos=jnp.zeros((rows, max_new), jnp.int32),
      logits=jnp.zeros((rows, c.vocab_size), jnp.float32),
      position=jnp.zeros(rows, jnp.int32), generated=jnp.zeros(rows, jnp.int32),
      done=jnp.ones(rows, bool), reason=jnp.zeros(rows, jnp.int32),
      out=jnp.full((rows, max_new), pad_id, jnp.int32), keys=jnp.zeros((rows, 2), jnp.uint32),
      ring=jnp.int32(0))


@functools.partial(parallel.jit, static_argnums=(0, 7), donate_argnums=(2,))
def _admit(graphdef: nnx.GraphDef, params: Any, slots: _Slots, prompt_ids: jax.Array,
           prompt_mask: jax.Array, into: jax.Array, row_keys: jax.Array, pad_id: int) -> _Slots:
  """Prefills prompts [n, t] once each and places them in prompt slots `into` [n] (an
  index past the last slot drops a filler row), right-aligned in the slots' width (t or
  wider), their rows' keys [n x samples, 2]."""
  model: Decoder = nnx.merge(graphdef, params)
  samples = slots.logits.shape[0] // slots.prefix_ok.shape[0]
  left = slots.prefix_ok.shape[1] - prompt_ids.shape[1]
  hidden, cache = model.prefill(prompt_ids, prompt_mask)
  logits = model.logits(hidden[:, -1:])[:, 0]
  rows = (into[:, None] * samples + jnp.arange(samples)).reshape(-1)
  n, max_new = len(rows), slots.out.shape[1]
  per_row = lambda x: jnp.repeat(x, samples, axis=0)
  put = lambda old, index, new: old.at[index].set(new.astype(old.dtype), mode="drop")
  return _Slots(
      prefix=[{name: put(old[name], into, jnp.pad(new[name], ((0, 0), (0, 0), (left, 0), (0, 0))))
               for name in ("k", "v")} for old, new in zip(slots.prefix, cache)],
      prefix_ok=put(slots.prefix_ok, into, jnp.pad(prompt_mask > 0, ((0, 0), (left, 0)))),
      prefix_pos=put(slots.prefix_pos, into,
                     jnp.pad(positions_from_mask(prompt_mask), ((0, 0), (left, 0)))),
      suffix=slots.suffix, suffix_pos=slots.suffix_pos,
      suffix_ok=put(slots.suffix_ok, rows, jnp.zeros((n, max_new), bool)),
      logits=put(slots.logits, rows, per_row(logits)),
      position=put(slots.position, rows, per_row(jnp.sum(prompt_mask, axis=1))),
      generated=put(slots.generated, rows, jnp.zeros(n, jnp.int32)),
      done=put(slots.done, rows, jnp.zeros(n, bool)),
      reason=put(slots.reason, rows, jnp.zeros(n, jnp.int32)),
      out=put(slots.out, rows, jnp.full((n, max_new), pad_id, jnp.int32)),
      keys=put(slots.keys, rows, row_keys), ring=slots.ring)


@functools.partial(parallel.jit, static_argnums=(0, 4, 5, 8), donate_argnums=(2,))
def _decode(graphdef: nnx.GraphDef, params: Any, slots: _Slots, sampling: Sampling,
            greedy: bool, eos_ids: tuple[int, ...], stops: jax.Array, stop_lengths: jax.Array,
            pad_id: int, refill_at: jax.Array) -> _Slots:
  """Decodes every row until all are done, or until `refill_at` prompt slots are free (the
  caller then admits waiting prompts into them)."""
  model: Decoder = nnx.merge(graphdef, params)
  rows, max_new = slots.out.shape
  prompts = slots.prefix_ok.shape[0]
  eos = jnp.asarray(eos_ids, jnp.int32)
  every_row = jnp.arange(rows)

  def body(s: _Slots) -> _Slots:
    active = ~s.done
    keys = jax.random.wrap_key_data(s.keys)
    token = jnp.where(active, next_tokens(s.logits, keys, s.generated, sampling, greedy), pad_id)
    out = s.out.at[every_row, s.generated].set(token, mode="drop")
    generated = s.generated + active
    is_eos = jnp.isin(token, eos) & active
    is_stop = _ends_with_stop(out, generated, stops, stop_lengths) & active & ~is_eos
    reason = jnp.where(is_eos, 1, jnp.where(is_stop, 2, s.reason))
    done = s.done | is_eos | is_stop | (generated >= max_new)
    index = s.ring % max_new
    suffix_ok = s.suffix_ok.at[:, index].set(active)
    suffix_pos = s.suffix_pos.at[:, index].set(s.position)
    hidden, suffix = model.decode_step(token[:, None], s.position[:, None], s.prefix,
                                       s.prefix_ok, s.suffix, suffix_ok, index,
                                       (s.prefix_pos, suffix_pos))
    return dataclasses.replace(
        s, suffix=suffix, suffix_ok=suffix_ok, suffix_pos=suffix_pos,
        logits=model.logits(hidden)[:, 0],
        position=s.position + active, generated=generated, done=done, reason=reason, out=out,
        ring=s.ring + 1)

  def cond(s: _Slots) -> jax.Array:
    free = jnp.sum(jnp.all(s.done.reshape(prompts, -1), axis=1))
    return ~jnp.all(s.done) & (free < refill_at)

  return jax.lax.while_loop(cond, body, slots)


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


def waves(groups: list, bucket: Callable[[Any], int], least: int, most: int) -> list[list]:
  """Consecutive runs of `groups` (sorted by length) of at most `most`, each ending where the
  length bucket changes once it holds `least`."""
  runs = [[]]
  for group in groups:
    current = runs[-1]
    if len(current) == most or (len(current) >= least and bucket(group) != bucket(current[-1])):
      runs.append(current := [])
    current.append(group)
  return [run for run in runs if run]


def shared_prompts(encoded: Sequence[Sequence[int]], most: int
                   ) -> tuple[list[list[int]], int]:
  """Indices of identical prompts in groups of `samples` each (groups share a prefill and
  its cache): `samples` is the largest divisor of every distinct prompt's count that is at
  most `most`, so no group has an empty row."""
  by_prompt: dict[tuple, list[int]] = {}
  for i, ids in enumerate(encoded):
    by_prompt.setdefault(tuple(ids), []).append(i)
  common = math.gcd(*map(len, by_prompt.values())) if by_prompt else 1
  samples = max(d for d in range(1, min(common, most) + 1) if common % d == 0)
  return [indices[j:j + samples] for indices in by_prompt.values()
          for j in range(0, len(indices), samples)], samples


class Generator:
  """Generates continuations of text prompts (already chat-formatted) in jitted batches."""

  def __init__(self, model: Decoder, tokenizer: Any, batch_size: int = 16,
               max_prompt_len: int = 2048, mesh: Mesh | None = None, reuse_slots: bool = True):
    """`reuse_slots=False` decodes each batch until its longest row ends (benchmarks measure
    slot reuse against it)."""
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
    self.reuse_slots = reuse_slots
    # admissions, prompts_admitted, decode_calls, decode_steps; state_bytes: the largest
    # decoding state
    self.stats = collections.Counter()
    self.compiled_shapes: set[tuple] = set()
    # Called with (kind, shape) before a shape's first compile; may raise to refuse it (a
    # server bounds how fast its clients can make it compile).
    self.admit_shape: Callable[[str, tuple], None] = lambda kind, shape: None

  def generate(self, prompts: Sequence[str | Sequence[int]], max_new_tokens: int = 256,
               sampling: Sampling = Sampling(), seed: int = 0,
               stop: Sequence[str] = (), first_index: int = 0, field: str = "prompts",
               keys: Sequence[tuple[int, int]] | None = None) -> list[Generation]:
    """One Generation per prompt, in order. A prompt over max_prompt_len is never cut here
    (a cut from the left loses the chat header and the instruction): it raises PromptTooLong
    naming the caller's `field`. Prompt i samples with key (seed, first_index + i), or
    keys[i] = (seed, index) when given, so work split into chunks samples exactly as in one
    call.

    Identical prompts (voting@k, a chat request's n) are prefilled once and their samples
    read that one cache. A prompt slot freed by finished rows takes the next waiting prompt of
    its wave, so short rationales do not wait for the longest of their batch."""
    encoded = [list(p) if not isinstance(p, str) else
               self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    for i, ids in enumerate(encoded):
      if len(ids) > self.max_prompt_len:
        raise PromptTooLong(field, first_index + i, len(ids), self.max_prompt_len)
    stops, stop_lengths = stop_table(
        [self.tokenizer.encode(s, add_special_tokens=False) for s in stop if s], max_new_tokens)
    decoding = (sampling.traced(), float(sampling.temperature) == 0.0, stops, stop_lengths)
    keys = keys if keys is not None else [(seed, first_index + i) for i in range(len(encoded))]
    key_data = np.asarray(jax.random.key_data(jax.vmap(
        lambda s, i: jax.random.fold_in(jax.random.key(s), i))(
            *(jnp.asarray(np.array(keys, np.int64).reshape(-1, 2)[:, c], jnp.int32)
              for c in (0, 1)))))
    groups, samples = shared_prompts(encoded, self.batch_size)
    groups.sort(key=lambda group: len(encoded[group[0]]))
    most = parallel.round_up_to_data_parallel(max(1, self.batch_size // samples), self.mesh)
    results: list[Generation | None] = [None] * len(encoded)
    bucket = lambda group: bucket_length(len(encoded[group[0]]), self.max_prompt_len)
    for wave in (waves(groups, bucket, _MIN_WAVE * most, _MAX_WAVE * most) if self.reuse_slots
                 else [groups[i:i + most] for i in range(0, len(groups), most)]):
      for index, generation in self._decode_wave(wave, samples, most, encoded, key_data,
                                                 max_new_tokens, decoding, stop):
        results[index] = generation
    return results

  def _decode_wave(self, groups: list[list[int]], samples: int, most: int,
                   encoded: list[list[int]], key_data: np.ndarray, max_new: int,
                   decoding: tuple, stop: Sequence[str]) -> Iterator[tuple[int, Generation]]:
    """Decodes groups of one prompt's samples (shortest prompt first) through at most `most`
    prompt slots as wide as the longest prompt's bucket, admitting waiting groups as slots
    free; yields (prompt index, Generation)."""
    sampling, greedy, stops, stop_lengths = decoding
    width = bucket_length(len(encoded[groups[-1][0]]), self.max_prompt_len)
    slot_count = bucket_rows(len(groups), most, self.data_parallel)
    slots = _empty_slots(self.graphdef, self.params, slot_count, samples, width, max_new,
                         self.pad_id)
    self.stats["state_bytes"] = max(self.stats["state_bytes"],
                                    sum(x.nbytes for x in jax.tree.leaves(slots)))
    waiting, held, free = collections.deque(groups), {}, list(range(slot_count))
    while True:
      if waiting and free:
        taken = [waiting.popleft() for _ in range(min(len(free), len(waiting)))]
        n = bucket_rows(len(taken), slot_count, self.data_parallel)
        into = free[:len(taken)] + [slot_count] * (n - len(taken))  # fillers: dropped
        held.update(zip(into, taken))
        free = free[len(taken):]
        taken_width = bucket_length(len(encoded[taken[-1][0]]), self.max_prompt_len)
        ids, mask = left_pad([encoded[group[0]] for group in taken], n, taken_width,
                             self.pad_id)
        row_keys = np.zeros((n * samples, 2), np.uint32)
        row_keys[:len(taken) * samples] = key_data[[i for group in taken for i in group]]
        self._note_shape("generate", (n, taken_width, slot_count, samples, width, max_new,
                                      stops.shape, greedy))
        self.stats.update(admissions=1, prompts_admitted=len(taken))
        slots = _admit(self.graphdef, self.params, slots, parallel.put_batch(ids, self.mesh),
                       parallel.put_batch(mask, self.mesh), np.asarray(into, np.int32),
                       row_keys, self.pad_id)
      if not held:
        self.stats.update(decode_steps=int(slots.ring))
        return
      refill_at = max(1, slot_count // 4) if waiting else slot_count + 1
      self.stats.update(decode_calls=1)
      slots = _decode(self.graphdef, self.params, slots, sampling, greedy, self.eos_ids, stops,
                      stop_lengths, self.pad_id, np.int32(refill_at))
      done, out, reason, generated = jax.device_get(
          (slots.done, slots.out, slots.reason, slots.generated))
      for slot, group in list(held.items()):
        rows = range(slot * samples, (slot + 1) * samples)
        if done[rows].all():
          for row, index in zip(rows, group):
            yield index, self._finish(out[row, :generated[row]], int(reason[row]), stop)
          del held[slot]
          free.append(slot)

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
