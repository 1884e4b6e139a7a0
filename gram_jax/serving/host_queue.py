"""The reward server's host work (tokenising) on one thread, bounded and under each request's
deadline.

Why: a client's large body must not make everyone else wait without limit. At most
`max_waiting` requests hold host work (beyond: 503 with a retry time); a job whose deadline
passed while it waited never starts; one that runs past its deadline is told so by the
deadline it receives and stops at its next chunk; the caller is answered at the deadline
whatever the thread is doing.
"""
import asyncio
import concurrent.futures
import math
import time
from typing import Any, Callable

from gram_jax.serving.request_queue import DeadlineExceeded, Overloaded


class HostQueue:
  """`run(function, *args, deadline=...)` calls `function(*args, deadline=deadline)` on the
  host thread; `function` raises TimeoutError when it sees the deadline pass."""

  def __init__(self, max_waiting: int):
    self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
    self.max_waiting = max_waiting
    self.waiting = 0  # jobs submitted and not finished (queued or running)
    self.seconds_per_job = 0.0  # moving average of a job's time on the thread
    self.running = False  # a job is on the thread now

  def retry_after(self) -> int:
    return int(min(60, max(1, math.ceil(self.waiting * (self.seconds_per_job or 0.1)))))

  async def run(self, function: Callable, *args: Any, deadline: float) -> Any:
    if self.waiting >= self.max_waiting:
      raise Overloaded(f"host queue full ({self.waiting} requests waiting for the tokenizer, "
                       f"max_host_queue={self.max_waiting})", self.retry_after())
    self.waiting += 1
    future = asyncio.get_running_loop().run_in_executor(
        self.executor, self._timed, function, args, deadline)
    future.add_done_callback(self._finished)
    try:
      return await asyncio.wait_for(asyncio.shield(future),
                                    max(0.0, deadline - time.monotonic()))
    except (asyncio.TimeoutError, TimeoutError):
      future.cancel()  # never starts if it is still queued
      raise DeadlineExceeded("deadline passed during host work (tokenising); server "
                             "overloaded", self.retry_after()) from None
    except asyncio.CancelledError:
      future.cancel()
      raise

  def _timed(self, function: Callable, args: tuple, deadline: float) -> Any:
    if time.monotonic() >= deadline:
      raise TimeoutError("deadline passed before the host work started")
    begun, self.running = time.perf_counter(), True
    try:
      return function(*args, deadline=deadline)
    finally:
      self.running = False
      spent = time.perf_counter() - begun
      self.seconds_per_job = spent if not self.seconds_per_job else \
          0.8 * self.seconds_per_job + 0.2 * spent

  def _finished(self, future: asyncio.Future) -> None:
    self.waiting -= 1
