"""The reward server's one door to the device: a bounded queue of scoring work and exclusive
calls (generation), run on one worker thread in batches.

Why each rule: pairs from concurrent requests are merged into batches of at most
`max_batch_pairs` (the jitted shapes stay those the warm-up compiled); a large job (a ranking,
a big group) is cut into such batches and interactive work (/score, RLHF rewards) goes first,
so long work never holds the device for long; the queue holds at most `max_queue_pairs` pairs
and `max_queued_calls` calls, beyond which a request is refused at once with a retry time
(queueing it would only make every client time out); a request whose deadline passed or
whose client left is dropped, not computed; and nothing a client does (cancelling, timing
out) can stop the loop — a batch that fails fails only its own requests.
"""
import asyncio
import collections
import concurrent.futures
import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
from absl import logging

INTERACTIVE, BULK = "interactive", "bulk"
_BULK_EVERY = 4  # a waiting bulk job gets at least every 4th batch


class Overloaded(Exception):
  """The queue is full; retry after `retry_after` seconds."""

  def __init__(self, message: str, retry_after: int):
    super().__init__(message)
    self.retry_after = retry_after


class DeadlineExceeded(Overloaded):
  """The request's deadline passed before its work was done."""


@dataclasses.dataclass(eq=False)
class Job:
  future: asyncio.Future
  deadline: float  # time.monotonic()
  lane: str
  rows: list = dataclasses.field(default_factory=list)  # pairs to score, in order
  call: Callable[[], Any] | None = None  # exclusive device work instead of rows
  cursor: int = 0  # rows handed to batches so far
  parts: list = dataclasses.field(default_factory=list)  # (scores, trimmed) per batch


class Batcher:
  """`score(rows)` -> (scores [N, 2], trimmed [N]) runs on `executor` (one thread)."""

  def __init__(self, score: Callable[[list], tuple[np.ndarray, np.ndarray]],
               executor: concurrent.futures.Executor, max_batch_pairs: int, max_wait_ms: float,
               max_queue_pairs: int, max_queued_calls: int,
               on_drop: Callable[[str], None] = lambda reason: None,
               on_batch: Callable[[int], None] = lambda pairs: None):
    self.score_rows, self.executor = score, executor
    self.max_batch_pairs, self.max_wait = max_batch_pairs, max_wait_ms / 1000
    self.max_queue_pairs, self.max_queued_calls = max_queue_pairs, max_queued_calls
    self.on_drop, self.on_batch = on_drop, on_batch
    self.lanes = {INTERACTIVE: collections.deque(), BULK: collections.deque()}
    self.queued_pairs = 0  # rows admitted and not yet handed to a batch
    self.queued_calls = 0
    self.rows_per_second = 0.0  # moving average of the device's scoring rate
    self.bulk_skipped = 0
    self.wakeup = asyncio.Event()
    self.on_device = False  # a batch or call is running on the device thread

  def _device(self, function: Callable, *args: Any) -> Any:
    """Runs on the device thread; `on_device` says so even after the loop has stopped
    (XLA work cannot be interrupted: a stopping server needs to know it is there)."""
    self.on_device = True
    try:
      return function(*args)
    finally:
      self.on_device = False

  def retry_after(self) -> int:
    """Seconds until the queue has likely drained, between 1 and 60."""
    rate = self.rows_per_second or 1.0
    return int(min(60, max(1, math.ceil(self.queued_pairs / rate))))

  async def score(self, rows: list, deadline: float, lane: str = INTERACTIVE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of `rows`, or Overloaded / DeadlineExceeded. Cancelling the caller (its client
    left) drops the rows not yet scored."""
    if not rows:
      return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if self.queued_pairs + len(rows) > self.max_queue_pairs:
      raise Overloaded(f"queue full ({self.queued_pairs} pairs waiting, max_queue_pairs="
                       f"{self.max_queue_pairs})", self.retry_after())
    job = Job(asyncio.get_running_loop().create_future(), deadline, lane, rows=list(rows))
    self.queued_pairs += len(rows)
    return await self._wait(job)

  async def call(self, function: Callable[[], Any], deadline: float, lane: str = BULK) -> Any:
    """`function()` on the device thread, alone (a generation, a raw scoring request)."""
    if self.queued_calls >= self.max_queued_calls:
      raise Overloaded(f"queue full ({self.queued_calls} device calls waiting, "
                       f"max_queued_calls={self.max_queued_calls})", self.retry_after())
    job = Job(asyncio.get_running_loop().create_future(), deadline, lane, call=function)
    self.queued_calls += 1
    return await self._wait(job)

  async def _wait(self, job: Job) -> Any:
    self.lanes[job.lane].append(job)
    self.wakeup.set()
    try:
      return await asyncio.wait_for(job.future, max(0.0, job.deadline - time.monotonic()))
    except asyncio.TimeoutError:
      self.on_drop("deadline")
      raise DeadlineExceeded("deadline passed before the work was done (server overloaded)",
                             self.retry_after()) from None
    except asyncio.CancelledError:
      self.on_drop("client_gone")
      raise
    finally:
      self._release(job)

  def _release(self, job: Job) -> None:
    """Takes a finished or abandoned job's remaining rows off the queue counts."""
    if job.call is not None:
      if job.cursor == 0:
        self.queued_calls -= 1
        job.cursor = 1
    else:
      self.queued_pairs -= len(job.rows) - job.cursor
      job.cursor = len(job.rows)

  def _live_head(self, lane: str) -> Job | None:
    queue = self.lanes[lane]
    while queue:
      job = queue[0]
      if not job.future.done() and time.monotonic() < job.deadline:
        return job
      queue.popleft()  # abandoned: its waiter already released it
    return None

  def _next_lane(self) -> str | None:
    interactive, bulk = self._live_head(INTERACTIVE), self._live_head(BULK)
    if bulk is not None and (interactive is None or self.bulk_skipped >= _BULK_EVERY - 1):
      self.bulk_skipped = 0
      return BULK
    if interactive is not None:
      self.bulk_skipped += bulk is not None
      return INTERACTIVE
    return None

  def _take(self, lane: str, budget: int) -> list[tuple[Job, int, int]]:
    """Up to `budget` rows from the head jobs of `lane`."""
    pieces = []
    while budget > 0:
      job = self._live_head(lane)
      if job is None or job.call is not None:
        break
      end = min(len(job.rows), job.cursor + budget)
      pieces.append((job, job.cursor, end))
      self.queued_pairs -= end - job.cursor
      budget -= end - job.cursor
      job.cursor = end
      if end == len(job.rows):
        self.lanes[lane].popleft()
    return pieces

  async def run(self) -> None:
    while True:
      try:
        await self._step()
      except asyncio.CancelledError:
        raise
      except Exception:  # a bug here must not stop the server: log, go on
        logging.exception("batcher: unexpected error")

  async def _step(self) -> None:
    lane = self._next_lane()
    if lane is None:
      self.wakeup.clear()
      await self.wakeup.wait()
      return
    head = self._live_head(lane)
    if head.call is not None:
      self.lanes[lane].popleft()
      self.queued_calls -= 1
      head.cursor = 1
      await self._run_call(head)
      return
    pieces = self._take(lane, self.max_batch_pairs)
    until = time.monotonic() + self.max_wait
    while sum(end - start for _, start, end in pieces) < self.max_batch_pairs:
      remaining = until - time.monotonic()
      if remaining <= 0:
        break
      if self._live_head(INTERACTIVE) is None:
        self.wakeup.clear()
        try:
          await asyncio.wait_for(self.wakeup.wait(), remaining)
        except asyncio.TimeoutError:
          break
        continue
      taken = sum(end - start for _, start, end in pieces)
      more = self._take(INTERACTIVE, self.max_batch_pairs - taken)
      if not more:
        break
      pieces += more
    await self._run_batch(pieces)

  async def _run_call(self, job: Job) -> None:
    loop = asyncio.get_running_loop()
    try:
      result = await loop.run_in_executor(self.executor, self._device, job.call)
    except Exception as e:  # the request that asked learns why
      if not job.future.done():
        job.future.set_exception(e)
      return
    if not job.future.done():
      job.future.set_result(result)

  async def _run_batch(self, pieces: list[tuple[Job, int, int]]) -> None:
    pieces = [(job, start, end) for job, start, end in pieces if not job.future.done()]
    if not pieces:
      return
    rows = [row for job, start, end in pieces for row in job.rows[start:end]]
    self.on_batch(len(rows))
    begun = time.perf_counter()
    try:
      scores, trimmed = await asyncio.get_running_loop().run_in_executor(
          self.executor, self._device, self.score_rows, rows)
    except Exception as e:  # every request in the batch learns why it failed
      for job, _, _ in pieces:
        if not job.future.done():
          job.future.set_exception(e)
      return
    rate = len(rows) / max(time.perf_counter() - begun, 1e-6)
    self.rows_per_second = rate if not self.rows_per_second else \
        0.8 * self.rows_per_second + 0.2 * rate
    offset = 0
    for job, start, end in pieces:
      count = end - start
      job.parts.append((scores[offset:offset + count], trimmed[offset:offset + count]))
      offset += count
      if end == len(job.rows) and not job.future.done():
        job.future.set_result((np.concatenate([p[0] for p in job.parts]),
                               np.concatenate([p[1] for p in job.parts])))

  def fail_all(self, error: Exception) -> None:
    """Fails every queued job (shutdown)."""
    for queue in self.lanes.values():
      while queue:
        job = queue.popleft()
        if not job.future.done():
          job.future.set_exception(error)
