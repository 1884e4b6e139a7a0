"""New compiled shapes on a serving path, admitted at a bounded rate. A chat client picks n,
max_tokens, stop strings and sampling; each new combination is a compile that holds the
device thread (8-22 s on CPU, stalling /score) and keeps its executable. Past the rate a
request that needs a new shape is answered 503 with Retry-After; shapes already compiled
are always served. Every XLA compile of the process is counted in /metrics."""
import threading
import time

import jax
import prometheus_client

from gram_jax.serving.request_queue import Overloaded


class CompileGate:
  """A token bucket of new shapes: `per_minute` a minute, as many at once."""

  def __init__(self, per_minute: int, refused: prometheus_client.Counter):
    self.per_minute, self.refused = per_minute, refused
    self.tokens, self.updated = float(per_minute), time.monotonic()
    self.lock = threading.Lock()

  def admit(self, kind: str, shape: tuple) -> None:
    """Called before a shape's first compile; raises Overloaded past the rate."""
    with self.lock:
      now = time.monotonic()
      self.tokens = min(self.per_minute, self.tokens + (now - self.updated) * self.per_minute / 60)
      self.updated = now
      if self.tokens >= 1:
        self.tokens -= 1
        return
      wait = max(1, int((1 - self.tokens) * 60 / self.per_minute + 0.999))
    self.refused.labels(kind).inc()
    raise Overloaded(f"this request needs a new compiled {kind} shape {shape}, and "
                     f"max_new_shapes_per_minute={self.per_minute} are compiling; retry "
                     "later, or use a shape already served (the same n, max_tokens rounded up "
                     "to a power of two, stop strings and greedy or sampled)", wait)


_COUNTERS: list[prometheus_client.Counter] = []


def count_compiles(counter: prometheus_client.Counter) -> None:
  """Counts every XLA compile of this process (scoring, generation, anything) in `counter`;
  one JAX listener serves every server made in the process."""
  if not _COUNTERS:
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, seconds, **_: name == "/jax/core/compile/backend_compile_duration" and
        [c.inc() for c in _COUNTERS])
  _COUNTERS.append(counter)
