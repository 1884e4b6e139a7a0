"""Training-run checkpoints with Orbax CheckpointManager: async, keep-last-K, resume, reshard.

One step directory holds three items: `params`, `train` (optimizer state, step, RNG) and
`meta` (data-iterator position, config, anything JSON). Orbax writes each step into a
temporary directory and renames it when complete, so a crash mid-save never produces a
step that `latest_step()` returns.
"""
import contextlib
import os
from typing import Any

import orbax.checkpoint as ocp

from gram_jax.errors import GramError


class RunCheckpointer:
  def __init__(self, directory: str, every_steps: int, keep: int, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=every_steps,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("params", "train", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: dict[str, Any], meta: dict[str, Any],
           force: bool = False) -> bool:
    """Starts an async save; a failed earlier save (disk full, ...) surfaces here."""
    train = {k: state[k] for k in ("opt_state", "step", "rng")}
    with self._write_errors():
      return self.manager.save(step, args=ocp.args.Composite(
          params=ocp.args.StandardSave(state["params"]), train=ocp.args.StandardSave(train),
          meta=ocp.args.JsonSave(meta)), force=force)

  @contextlib.contextmanager
  def _write_errors(self):
    """A write that failed (disk full, quota, I/O error) is one clear error; the step it was
    writing stays a temporary directory that no restore will ever pick."""
    try:
      yield
    except GramError:
      raise
    except Exception as e:  # Orbax/TensorStore raise ValueError, OSError, RuntimeError...
      reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
      raise GramError(f"{self.directory}: writing a checkpoint failed ({reason}); the last "
                      f"complete checkpoint is step {self.latest_step()}; free space and "
                      "rerun to resume from it") from None

  def restore(self, step: int, abstract_state: dict[str, Any]) -> tuple[dict, dict]:
    """Restores onto the shardings in `abstract_state` (any mesh)."""
    train_target = {k: abstract_state[k] for k in ("opt_state", "step", "rng")}
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract_state["params"]),
          train=ocp.args.StandardRestore(train_target), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError) as e:
      raise GramError(f"{self.directory}/{step}: checkpoint does not match this model and "
                      f"optimizer ({str(e).splitlines()[0]})") from None
    return {"params": restored.params, **restored.train}, restored.meta

  def restore_params(self, step: int, abstract_params: dict[str, Any]) -> dict:
    restored = self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params)))
    return restored.params

  def restore_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def wait(self) -> None:
    with self._write_errors():
      self.manager.wait_until_finished()

  def close(self) -> None:
    with self._write_errors():
      self.manager.wait_until_finished()
    self.manager.close()
