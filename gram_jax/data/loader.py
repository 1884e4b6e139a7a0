"""Deterministic, resumable batches of packed or padded LM examples.

The order of epoch e is a permutation seeded by (seed, e); the position is (epoch, cursor,
and the later positions packing already took out of turn). Resuming replays the row assembly
from lengths alone (no tokenisation, no arrays), so the position after `skip(k)` equals the
one reached by building k batches.
"""
from typing import Any, Iterator

import numpy as np

from gram_jax.data.encode import TokenizedSet
from gram_jax.errors import GramError

Batch = dict[str, np.ndarray]


class ShuffledCursor:
  """Walks a host's examples epoch after epoch in seeded order; (epoch, cursor, ahead) is the
  state. Subclasses say how examples make a row (`_row`)."""

  def __init__(self, data: TokenizedSet, rows: int, seq_len: int, micro_batches: int,
               seed: int, pad_id: int):
    if len(data) == 0:
      raise GramError("no training examples on this host")
    self.data, self.rows, self.seq_len = data, rows, seq_len
    self.micro_batches, self.seed, self.pad_id = micro_batches, seed, pad_id
    self.lengths = np.minimum(data.lengths(), seq_len)
    self.epoch, self.cursor = 0, 0
    self.ahead: set[int] = set()  # positions past the cursor already taken (by packing)
    self._order = self._epoch_order(0)
    self.taken: list[int] = []  # examples taken since the last `taken_sources()`
    self._rows_per_epoch: int | None = None

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

  def state(self) -> dict[str, Any]:
    state: dict[str, Any] = {"epoch": self.epoch, "cursor": self.cursor}
    if self.ahead:
      state["ahead"] = sorted(self.ahead)
    return state

  def restore(self, state: dict[str, Any]) -> None:
    self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
    self.ahead = {int(p) for p in state.get("ahead", ())}
    self._order = self._epoch_order(self.epoch)
    self.taken = []

  def _take(self) -> int:
    if self.cursor == len(self._order):
      self.epoch, self.cursor, self.ahead = self.epoch + 1, 0, set()
      self._order = self._epoch_order(self.epoch)
    index = int(self._order[self.cursor])
    self.cursor += 1
    while self.cursor in self.ahead:
      self.ahead.remove(self.cursor)
      self.cursor += 1
    self.taken.append(index)
    return index

  def _take_ahead(self, position: int) -> int:
    """Takes the example at a later position of this epoch's order, out of turn."""
    index = int(self._order[position])
    self.ahead.add(position)
    self.taken.append(index)
    return index

  def taken_sources(self) -> list[str]:
    """The records of the examples taken since the last call (e.g. one batch's)."""
    names = [self.data.source(i) for i in self.taken]
    self.taken = []
    return names

  def _advance(self) -> int:
    """Takes the examples of the next unit of rows (a row; a step for subclasses that build
    whole steps), from lengths alone; returns how many rows."""
    self._row()
    return 1

  def skip(self, batches: int) -> None:
    rows = 0
    while rows < batches * self.micro_batches * self.rows:
      rows += self._advance()
    self.taken = []

  def __iter__(self) -> Iterator[Batch]:
    return self

  def rows_per_epoch(self) -> int:
    """Rows one epoch makes from this host's examples (replayed once, then remembered)."""
    if self._rows_per_epoch is not None:
      return self._rows_per_epoch
    saved = self.state()
    self.restore({"epoch": 0, "cursor": 0})
    count = 0
    while self.epoch == 0 and self.cursor < len(self._order):
      count += self._advance()
    self.restore(saved)
    self._rows_per_epoch = count
    return count

  def padding_fraction(self) -> float:
    """Share of an epoch's row positions that hold no token (packing drives it down)."""
    return 1.0 - float(self.lengths.sum()) / (self.rows_per_epoch() * self.seq_len)


class BatchIterator(ShuffledCursor):
  """LM batches shaped [micro_batches, rows, seq_len], packed or padded, for one host."""

  def __init__(self, data: TokenizedSet, rows: int, seq_len: int, micro_batches: int = 1,
               seed: int = 0, pack: bool = True, pad_id: int = 0, max_segments: int = 0,
               pack_window: int = 64):
    super().__init__(data, rows, seq_len, micro_batches, seed, pad_id)
    self.pack, self.max_segments = pack, max_segments or seq_len
    self.pack_window = pack_window

  @staticmethod
  def count_tokens(batch: Batch) -> int:
    return int((batch["segment_ids"] > 0).sum())

  def empty_batch(self, micro_batches: int, rows: int) -> Batch:
    """An all-padding batch of this iterator's arrays, [micro_batches, rows, ...] (the
    shapes a step is compiled for)."""
    return self._empty((micro_batches, rows, self.seq_len))

  def _peek_length(self) -> int:
    if self.cursor == len(self._order):
      return int(self.lengths[self._epoch_order(self.epoch + 1)[0]])
    return int(self.lengths[self._order[self.cursor]])

  def _fitting_ahead(self, room: int) -> int | None:
    """The first position among the next `pack_window` of this epoch whose example fits."""
    end = min(self.cursor + 1 + self.pack_window, len(self._order))
    for position in range(self.cursor + 1, end):
      if position not in self.ahead and self.lengths[self._order[position]] <= room:
        return position
    return None

  def _row(self) -> list[int]:
    """Example indices for one row: one when padding; when packing, the next examples while
    they fit, then (first fit) any of the next `pack_window` that fits, at most max_segments.
    Rows depend on lengths alone, so a resumed run replays them without tokens."""
    row = [self._take()]
    used = int(self.lengths[row[0]])
    while self.pack and len(row) < self.max_segments:
      if used + self._peek_length() <= self.seq_len:
        row.append(self._take())
      else:
        position = self._fitting_ahead(self.seq_len - used)
        if position is None:
          break
        row.append(self._take_ahead(position))
      used += int(self.lengths[row[-1]])
    return row

  def _checked(self, index: int, room: int) -> tuple[np.ndarray, int]:
    """An example that fits where it goes: encoders cut examples by fields to cutoff_len
    (<= seq_len), so a longer one is never cut here, silently, at either end."""
    ids, prompt_len = self.data.example(index)
    if len(ids) > room:
      raise GramError(f"{self.data.source(index)}: {len(ids)} tokens do not fit the "
                      f"{room} left in a row of config.data.seq_len={self.seq_len}")
    return ids, prompt_len

  def _fill(self, batch: Batch, m: int, r: int, indices: list[int]) -> None:
    start = 0
    for segment, index in enumerate(indices, start=1):
      ids, prompt_len = self._checked(index, self.seq_len - start)
      n = len(ids)
      span = slice(start, start + n)
      batch["input_ids"][m, r, span] = ids
      batch["segment_ids"][m, r, span] = segment
      batch["positions"][m, r, span] = np.arange(n)
      batch["targets"][m, r, start:start + n - 1] = ids[1:]
      trained = np.arange(1, n) >= prompt_len
      batch["target_mask"][m, r, start:start + n - 1] = trained
      start += n

  def _empty(self, shape: tuple[int, int, int]) -> Batch:
    return {"input_ids": np.full(shape, self.pad_id, np.int32),
            "segment_ids": np.zeros(shape, np.int32),
            "positions": np.zeros(shape, np.int32),
            "targets": np.zeros(shape, np.int32),
            "target_mask": np.zeros(shape, np.float32)}

  def assemble(self, rows: list[list[int]], micro_batches: int = 1) -> Batch:
    """The batch [micro_batches, len(rows) / micro_batches, seq_len] of these example rows."""
    shape = (micro_batches, len(rows) // micro_batches, self.seq_len)
    batch = self._empty(shape)
    for i, indices in enumerate(rows):
      self._fill(batch, *divmod(i, shape[1]), indices)
    return batch

  def __next__(self) -> Batch:
    rows = [self._row() for _ in range(self.micro_batches * self.rows)]
    return self.assemble(rows, self.micro_batches)


class VerdictBatchIterator(BatchIterator):
  """Verdict batches: judging prompts packed several to a row (or one a row), each with its
  own segment id and positions from 0, so a prompt sees only itself and reads as it would
  alone; `verdict_index` [.., rows, max_pairs] is each prompt's last token, where the label
  is read, with its `labels` and `weights` (0 for empty slots)."""

  def __init__(self, data: TokenizedSet, rows: int, seq_len: int, micro_batches: int = 1,
               seed: int = 0, pack: bool = True, pad_id: int = 0, max_pairs_per_row: int = 16):
    super().__init__(data, rows, seq_len, micro_batches, seed, pack, pad_id,
                     max_pairs_per_row if pack else 1)

  def _fill(self, batch: Batch, m: int, r: int, indices: list[int]) -> None:
    start = 0
    for slot, index in enumerate(indices):
      ids = self._checked(index, self.seq_len - start)[0]
      span = slice(start, start + len(ids))
      batch["input_ids"][m, r, span] = ids
      batch["segment_ids"][m, r, span] = slot + 1
      batch["positions"][m, r, span] = np.arange(len(ids))
      batch["verdict_index"][m, r, slot] = start + len(ids) - 1
      batch["labels"][m, r, slot] = self.data.labels[index]
      batch["weights"][m, r, slot] = 1.0
      start += len(ids)

  def _empty(self, shape: tuple[int, int, int]) -> Batch:
    slots = shape[:2] + (self.max_segments,)
    return {"input_ids": np.full(shape, self.pad_id, np.int32),
            "segment_ids": np.zeros(shape, np.int32),
            "positions": np.zeros(shape, np.int32),
            "verdict_index": np.zeros(slots, np.int32),
            "labels": np.zeros(slots, np.int32),
            "weights": np.zeros(slots, np.float32)}


class PairedVerdictBatchIterator(VerdictBatchIterator):
  """Verdict batches whose every step holds both A/B orders of each of its pairs: examples
  2i and 2i+1 are one pair's two orders and are shuffled, taken and placed as one, so each
  step is exactly balanced between A and B and contrastive (the same pair with each label),
  instead of balanced only over an epoch. A step takes whole pairs while both prompts find
  room (first fit over all its rows; one prompt a row without packing), then the first of the
  next `pack_window` pairs that fits; positions count pairs."""

  def __init__(self, data: TokenizedSet, rows: int, seq_len: int, micro_batches: int = 1,
               seed: int = 0, pack: bool = True, pad_id: int = 0, max_pairs_per_row: int = 16):
    if len(data) % 2:
      raise GramError(f"balanced steps need both orders of every pair: {len(data)} examples")
    super().__init__(data, rows, seq_len, micro_batches, seed, pack, pad_id, max_pairs_per_row)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.data) // 2)

  def taken_sources(self) -> list[str]:
    names = [self.data.source(2 * pair + k) for pair in self.taken for k in (0, 1)]
    self.taken = []
    return names

  def _placed(self, pair: int, free: list[int], used: list[int]) -> list[int] | None:
    """The rows (first fit) that take the pair's two prompts, or None."""
    free, used, rows = list(free), list(used), []
    for example in (2 * pair, 2 * pair + 1):
      length = int(self.lengths[example])
      row = next((r for r in range(len(free))
                  if free[r] >= length and used[r] < self.max_segments), None)
      if row is None:
        return None
      free[row] -= length
      used[row] += 1
      rows.append(row)
    return rows

  def _next_pair(self) -> int:
    """The pair `_take` would return, without taking it."""
    if self.cursor == len(self._order):
      return int(self._epoch_order(self.epoch + 1)[0])
    return int(self._order[self.cursor])

  def _fitting_pair_ahead(self, free: list[int], used: list[int]) -> int | None:
    end = min(self.cursor + 1 + self.pack_window, len(self._order))
    for position in range(self.cursor + 1, end):
      if position not in self.ahead and self._placed(int(self._order[position]), free, used):
        return position
    return None

  def _step(self) -> list[list[int]]:
    """Example indices of each of one step's rows."""
    slots = self.micro_batches * self.rows
    rows: list[list[int]] = [[] for _ in range(slots)]
    free, used = [self.seq_len] * slots, [0] * slots
    first = True
    while True:
      placed = self._placed(self._next_pair(), free, used)
      if placed is not None:
        pair = self._take()
      elif first:
        raise GramError(
            f"{self.data.source(2 * self._next_pair())}: the pair's two orders do not fit "
            f"one step of {slots} rows of config.data.seq_len={self.seq_len} "
            "(config.data.balanced_steps puts both in the same step)")
      else:
        position = self._fitting_pair_ahead(free, used)
        if position is None:
          break
        pair = self._take_ahead(position)
        placed = self._placed(pair, free, used)
      for example, row in zip((2 * pair, 2 * pair + 1), placed):
        rows[row].append(example)
        free[row] -= int(self.lengths[example])
        used[row] += 1
      first = False
    return rows

  def _advance(self) -> int:
    self._step()
    return self.micro_batches * self.rows

  def __next__(self) -> Batch:
    return self.assemble(self._step(), self.micro_batches)
