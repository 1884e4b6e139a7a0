"""Reading a run directory while its run writes the next step (evaluate or export beside a
live trainer) must leave that step's temporary directory alone."""
import os
import time

import numpy as np

from gram_jax.checkpoint import RunCheckpointer


def _state() -> dict:
  return {"params": {"w": np.ones((4,), np.float32)}, "opt_state": {"m": np.zeros((4,))},
          "step": np.int32(2), "rng": np.zeros((2,), np.uint32)}


def _in_flight(directory: str) -> str:
  """What a writer leaves while step 4 is being written: Orbax's temporary directory."""
  path = os.path.join(directory, "4.orbax-checkpoint-tmp", "params.orbax-checkpoint-tmp")
  os.makedirs(path)
  open(os.path.join(path, "part"), "w").close()
  return os.path.dirname(path)


def test_a_reader_leaves_the_step_in_flight_and_the_writer_cleans_it(tmp_path):
  directory = str(tmp_path / "checkpoints")
  writer = RunCheckpointer(directory, every_steps=1, keep=2, async_save=False)
  writer.save(2, _state(), {"step": 2}, force=True)
  writer.close()
  in_flight = _in_flight(directory)

  reader = RunCheckpointer.reader(directory)
  assert reader.latest_step() == 2
  np.testing.assert_array_equal(reader.restore_params(2, {"w": np.zeros((4,), np.float32)})["w"],
                                np.ones((4,), np.float32))
  reader.close()
  time.sleep(1.0)  # Orbax cleans up in a background thread: give it time to act
  assert os.path.isdir(in_flight), "a reader deleted the step a live run is writing"

  writer = RunCheckpointer(directory, every_steps=1, keep=2, async_save=False)
  writer.save(4, _state(), {"step": 4}, force=True)  # a resumed writer owns the directory
  writer.close()
  assert sorted(os.listdir(directory)) == ["2", "4"]
