"""The reward server's batcher under the attacks of the serving review: requests cancelled
mid-batch, a full queue, deadlines, a batch that fails, long work beside interactive work.
A fake scorer (row value -> score) stands in for the device, so each test runs in ms."""
import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

from gram_jax.serving.request_queue import BULK, Batcher, DeadlineExceeded, Overloaded


class FakeDevice:
  """Scores row x as (x, -x); can be held (to fill the queue) and records each batch."""

  def __init__(self, seconds: float = 0.0):
    self.seconds, self.batches, self.gate = seconds, [], threading.Event()
    self.gate.set()

  def __call__(self, rows):
    self.gate.wait(10)
    time.sleep(self.seconds)
    if "boom" in rows:
      raise ValueError("bad row")
    self.batches.append(list(rows))
    values = np.array(rows, np.float32)
    return np.stack([values, -values], 1), np.zeros(len(rows), bool)


def batcher_for(device, **overrides):
  options = dict(max_batch_pairs=4, max_wait_ms=1, max_queue_pairs=16, max_queued_calls=2)
  options.update(overrides)
  executor = concurrent.futures.ThreadPoolExecutor(1)
  drops = []
  batcher = Batcher(device, executor, options["max_batch_pairs"], options["max_wait_ms"],
                    options["max_queue_pairs"], options["max_queued_calls"], drops.append)
  return batcher, drops


async def started(batcher):
  return asyncio.create_task(batcher.run())


def later(seconds=10):
  return time.monotonic() + seconds


def test_requests_cancelled_mid_batch_leave_the_batcher_serving():
  """The attack: a client leaves while its rows are on the device. Before, set_result on its
  cancelled future raised InvalidStateError and killed the loop: every later request hung."""
  async def main():
    device = FakeDevice(seconds=0.05)
    batcher, drops = batcher_for(device)
    task = await started(batcher)
    waiting = [asyncio.create_task(batcher.score([i, i + 1], later())) for i in range(0, 6, 2)]
    await asyncio.sleep(0.01)  # the first batch is on the device
    for request in waiting[:2]:
      request.cancel()
    scores, _ = await waiting[2]
    after, _ = await batcher.score([7.0], later())
    assert not task.done()
    np.testing.assert_array_equal(scores[:, 0], [4, 5])
    np.testing.assert_array_equal(after, [[7, -7]])
    assert drops == ["client_gone", "client_gone"]
    assert batcher.queued_pairs == 0
    task.cancel()
  asyncio.run(main())


def test_a_full_queue_refuses_at_once_with_a_retry_time():
  async def main():
    device = FakeDevice()
    device.gate.clear()  # the device is busy
    batcher, _ = batcher_for(device, max_queue_pairs=8)
    task = await started(batcher)
    first = asyncio.create_task(batcher.score(list(range(4)), later()))
    await asyncio.sleep(0.01)  # taken by a batch, stuck on the device
    queued = asyncio.create_task(batcher.score(list(range(8)), later()))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="max_queue_pairs=8") as refused:
      await batcher.score([1.0], later())
    assert 1 <= refused.value.retry_after <= 60
    device.gate.set()
    assert len((await first)[0]) == 4 and len((await queued)[0]) == 8
    assert batcher.queued_pairs == 0
    task.cancel()
  asyncio.run(main())


def test_no_request_waits_past_its_deadline_and_expired_work_is_not_computed():
  async def main():
    device = FakeDevice(seconds=0.2)
    batcher, drops = batcher_for(device, max_batch_pairs=1)
    task = await started(batcher)
    busy = asyncio.create_task(batcher.score([1.0], later()))
    await asyncio.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
      await batcher.score([99.0], time.monotonic() + 0.05)
    assert time.monotonic() - start < 0.15
    await busy
    await asyncio.sleep(0.3)
    assert [99.0] not in device.batches and drops == ["deadline"]
    task.cancel()
  asyncio.run(main())


def test_a_failing_batch_fails_only_its_requests():
  async def main():
    batcher, _ = batcher_for(FakeDevice(), max_wait_ms=20)
    task = await started(batcher)
    bad = asyncio.create_task(batcher.score(["boom"], later()))
    with pytest.raises(ValueError, match="bad row"):
      await bad
    assert (await batcher.score([2.0], later()))[0].tolist() == [[2, -2]]
    task.cancel()
  asyncio.run(main())


def test_long_work_is_cut_into_batches_and_interactive_work_goes_between():
  async def main():
    device = FakeDevice(seconds=0.01)
    batcher, _ = batcher_for(device, max_batch_pairs=4, max_queue_pairs=1000)
    task = await started(batcher)
    long = asyncio.create_task(batcher.score(list(range(100, 140)), later(), BULK))
    await asyncio.sleep(0.015)
    short = (await batcher.score([1.0, 2.0], later()))[0]
    assert not long.done()  # the short request did not wait for the whole ranking
    scores, _ = await long
    np.testing.assert_array_equal(scores[:, 0], range(100, 140))  # in order, none lost
    assert max(len(b) for b in device.batches) <= 4
    np.testing.assert_array_equal(short[:, 0], [1, 2])
    task.cancel()
  asyncio.run(main())


def test_exclusive_calls_run_on_the_device_thread_and_are_bounded():
  async def main():
    device = FakeDevice()
    batcher, _ = batcher_for(device, max_queued_calls=1)
    task = await started(batcher)
    device.gate.clear()
    blocker = asyncio.create_task(batcher.score([1.0], later()))
    await asyncio.sleep(0.01)
    names = []
    call = asyncio.create_task(batcher.call(lambda: names.append(
        threading.current_thread().name) or "done", later()))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="max_queued_calls=1"):
      await batcher.call(lambda: None, later())
    device.gate.set()
    assert await call == "done" and await blocker is not None
    assert names and names[0] != threading.current_thread().name
    task.cancel()
  asyncio.run(main())
