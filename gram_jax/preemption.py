"""Preemption: SIGTERM (a preempted TPU VM, `scancel`, a SLURM time limit) means "save and exit".

The signal only sets a flag. Long loops ask `should_stop()` at points where stopping is safe —
after a training step, after a chunk of generations or scores has been journaled — and then
save what they have and raise `Preempted`; `gram_jax.main` turns that into exit status 0.

On several processes the decision must be the same step on every host, or one host saves a
checkpoint the others never write. There JAX's coordination service receives the SIGTERM and
`multihost_utils.reached_preemption_sync_point(n)` turns true on every host at the same n, so
every process calls `should_stop()` at the same points in the same order (the stages are SPMD).
"""
import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils

from gram_jax.errors import GramError


class Preempted(Exception):
  """Raised after the work so far is saved; the rerun resumes from there."""


class _Watch:
  def __init__(self):
    self.requested = False
    self.checks = 0
    self.installed = False

  def install(self) -> None:
    """Single process: a Python SIGTERM handler. Several processes: JAX's preemption service
    already handles SIGTERM and synchronises the step (a Python handler would replace it)."""
    if self.installed or jax.process_count() > 1:
      self.installed = True
      return
    if threading.current_thread() is not threading.main_thread():
      return  # signal handlers can only be set from the main thread (e.g. inside a server)
    signal.signal(signal.SIGTERM, self._on_sigterm)
    self.installed = True

  def _on_sigterm(self, signum, frame) -> None:
    if self.requested:  # a second SIGTERM: stop now, as without a handler
      signal.signal(signal.SIGTERM, signal.SIG_DFL)
      signal.raise_signal(signal.SIGTERM)
    self.requested = True
    logging.warning("SIGTERM: finishing the current step, saving, then exiting")

  def should_stop(self, step: int | None = None) -> bool:
    """True when this is the point to save and exit; every process must call it in step.

    Training passes its step number, the number Orbax's CheckpointManager also hands the
    sync point when it saves (it force-saves that step itself); other loops continue the
    count from the last number used, as the sync point needs increasing numbers."""
    self.checks = step if step is not None else self.checks + 1
    if jax.process_count() > 1 and not self.requested:
      try:  # true at one agreed point only: remembered, so later loops stop at once too
        self.requested = multihost_utils.reached_preemption_sync_point(self.checks)
      except RuntimeError as e:  # jax_enable_preemption_service turned off
        raise GramError(f"preemption: {e}") from None
    return self.requested


_WATCH = _Watch()


def install() -> None:
  _WATCH.install()


def should_stop(step: int | None = None) -> bool:
  return _WATCH.should_stop(step)
