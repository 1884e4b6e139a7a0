"""Decoding on the device: sampling (temperature, top-k, top-p from per-row keys), stop
sequences in a fixed-shape table, and the jitted programs over prompt slots that
inference.generate drives — prefill into a slot (`admit`), the `lax.while_loop` that decodes
until every row is done or enough slots are free (`decode`), and teacher-forced token
log-probabilities.

Sampling parameters and stop sequences are traced inputs of fixed shape (stops go in a table
of at least 4 rows by 8 tokens, rounded up to powers of two), so a server's clients cannot make
it compile per temperature or stop string.
"""
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gram_jax import parallel
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


def ends_with_stop(out: jax.Array, generated: jax.Array, table: jax.Array,
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
class Slots:
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
def empty_slots(graphdef: nnx.GraphDef, params: Any, prompts: int, samples: int, width: int,
                 max_new: int, pad_id: int) -> Slots:
  model: Decoder = nnx.merge(graphdef, params)
  c, rows = model.config, prompts * samples
  prefix_shape = (prompts, c.num_kv_heads, width, c.head_dim)
  return Slots(
      prefix=[{"k": jnp.zeros(prefix_shape, c.dtype), "v": jnp.zeros(prefix_shape, c.dtype)}
              for _ in range(c.num_layers)],
      prefix_ok=jnp.zeros((prompts, width), bool),
      prefix_pos=jnp.zeros((prompts, width), jnp.int32),
      suffix=model.empty_suffix(rows, max_new), suffix_ok=jnp.zeros((rows, max_new), bool),
      suffix_pos=jnp.zeros((rows, max_new), jnp.int32),
      logits=jnp.zeros((rows, c.vocab_size), jnp.float32),
      position=jnp.zeros(rows, jnp.int32), generated=jnp.zeros(rows, jnp.int32),
      done=jnp.ones(rows, bool), reason=jnp.zeros(rows, jnp.int32),
      out=jnp.full((rows, max_new), pad_id, jnp.int32), keys=jnp.zeros((rows, 2), jnp.uint32),
      ring=jnp.int32(0))


@functools.partial(parallel.jit, static_argnums=(0, 7), donate_argnums=(2,))
def admit(graphdef: nnx.GraphDef, params: Any, slots: Slots, prompt_ids: jax.Array,
           prompt_mask: jax.Array, into: jax.Array, row_keys: jax.Array, pad_id: int) -> Slots:
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
  return Slots(
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
def decode(graphdef: nnx.GraphDef, params: Any, slots: Slots, sampling: Sampling,
            greedy: bool, eos_ids: tuple[int, ...], stops: jax.Array, stop_lengths: jax.Array,
            pad_id: int, refill_at: jax.Array) -> Slots:
  """Decodes every row until all are done, or until `refill_at` prompt slots are free (the
  caller then admits waiting prompts into them)."""
  model: Decoder = nnx.merge(graphdef, params)
  rows, max_new = slots.out.shape
  prompts = slots.prefix_ok.shape[0]
  eos = jnp.asarray(eos_ids, jnp.int32)
  every_row = jnp.arange(rows)

  def body(s: Slots) -> Slots:
    active = ~s.done
    keys = jax.random.wrap_key_data(s.keys)
    token = jnp.where(active, next_tokens(s.logits, keys, s.generated, sampling, greedy), pad_id)
    out = s.out.at[every_row, s.generated].set(token, mode="drop")
    generated = s.generated + active
    is_eos = jnp.isin(token, eos) & active
    is_stop = ends_with_stop(out, generated, stops, stop_lengths) & active & ~is_eos
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

  def cond(s: Slots) -> jax.Array:
    free = jnp.sum(jnp.all(s.done.reshape(prompts, -1), axis=1))
    return ~jnp.all(s.done) & (free < refill_at)

  return jax.lax.while_loop(cond, body, slots)


@functools.partial(parallel.jit, static_argnums=(0, 4))
def token_logprobs(graphdef: nnx.GraphDef, params: Any, ids: jax.Array, mask: jax.Array,
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
