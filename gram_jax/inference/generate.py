"""Batched generation from text prompts: the host side of decoding (inference.decoding).

Prompts, shortest first, go through waves of prompt slots as wide as the wave's longest
prompt; each is left-padded and prefilled once into a slot, and each slot holds `samples`
rows (identical prompts share a slot: voting@k, a chat request's n), which read the prompt's
keys once and write their own generated keys into a ring of max_new_tokens slots. Decoding
runs until every row has finished (EOS, a stop sequence or max_new_tokens) or enough prompt
slots are free to admit waiting prompts. Each row samples from its own key, derived from
(seed, the prompt's index) and its token count, so a prompt's sample depends neither on its
batch-mates nor on when it was admitted.

The compiled shapes are bounded by the batch, prompt, length and stop-table buckets (sampling
settings are traced), and each new one is logged.
"""
import collections
import dataclasses
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
from gram_jax.inference.decoding import (Sampling, admit, decode, empty_slots, stop_table,
                                         token_logprobs)
from gram_jax.models.decoder import Decoder

# Prompts decoded through one set of slots (a wave) are as wide as its longest: a wave ends at
# a length bucket once it holds _MIN_WAVE slots' worth of prompts (enough to refill from),
# and at _MAX_WAVE slots' worth (measured: BENCHMARKS.md, "Generation at rationale lengths").
_MIN_WAVE, _MAX_WAVE = 2, 8


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
    slots = empty_slots(self.graphdef, self.params, slot_count, samples, width, max_new,
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
        slots = admit(self.graphdef, self.params, slots, parallel.put_batch(ids, self.mesh),
                      parallel.put_batch(mask, self.mesh), np.asarray(into, np.int32),
                      row_keys, self.pad_id)
      if not held:
        self.stats.update(decode_steps=int(slots.ring))
        return
      refill_at = max(1, slot_count // 4) if waiting else slot_count + 1
      self.stats.update(decode_calls=1)
      slots = decode(self.graphdef, self.params, slots, sampling, greedy, self.eos_ids, stops,
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
      chosen, top, top_ids = jax.device_get(token_logprobs(
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
