"""The changes a refused memory plan tries, in order: the mechanism, without compiling."""
import types

import jax

from gram_jax import configlib
from gram_jax.models.config import tiny_config
from gram_jax.stages import memory_advice
from gram_jax.training import memory_plan

GB = memory_plan.GB


def _changes(c, mesh_shape):
  built = []
  make_trainer = lambda config, moments=None, with_lora=None, on_mesh=None: built.append(
      (with_lora, on_mesh))
  changes = memory_advice.changes(c, tiny_config(), make_trainer,
                          types.SimpleNamespace(micro_batches=1, rows=8),
                          lambda trainer, micro, rows: None,
                          types.SimpleNamespace(shape=mesh_shape))
  return changes, built


def test_a_state_copied_over_the_data_axis_is_first_told_to_shard_it():
  c = configlib.base_config("pretrain")
  c.mesh.data, c.mesh.fsdp = 8, 1
  changes, built = _changes(c, {"data": 8, "fsdp": 1, "tensor": 1})
  first = next(changes)
  assert first.flags == "--config.mesh.data=1 --config.mesh.fsdp=-1"
  first.compile()
  assert dict(built[0][1].shape) == {"data": 1, "fsdp": jax.device_count(), "tensor": 1}


def test_lora_then_qlora_come_last():
  c = configlib.base_config("pretrain")
  changes, built = _changes(c, {"data": 1, "fsdp": 1, "tensor": 1})
  flags = [change.flags for change in changes]
  assert not flags[0].startswith("--config.mesh")
  lora_at = next(i for i, f in enumerate(flags) if "lora.rank=16" in f)
  assert all("lora" in f for f in flags[lora_at:])
  assert flags[-1].endswith("--config.model.lora.quantize=nf4")
  c.model.lora.rank = 8  # already LoRA: only the quantized base is left to offer
  changes, _ = _changes(c, {"data": 1, "fsdp": 1, "tensor": 1})
  assert [f for f in (ch.flags for ch in changes) if "lora" in f] == [
      "--config.model.lora.quantize=nf4", "--config.model.remat=full "
      "--config.model.lora.quantize=nf4", "--config.train.moment_dtype=bfloat16 "
      "--config.model.lora.quantize=nf4", "--config.model.remat=full "
      "--config.train.moment_dtype=bfloat16 --config.model.lora.quantize=nf4"]


def test_the_search_for_a_change_that_fits_stops_at_its_budget(monkeypatch):
  """Each change is a compile (~10 s on a large model); an absurd batch once compiled 35
  before its line."""
  clock = iter(range(0, 10_000, 10))  # each look at the clock: 10 s later
  monkeypatch.setattr(memory_plan.time, "monotonic", lambda: next(clock))
  over = memory_plan.MemoryPlan(params=10 * GB, optimizer=0, batch=0, arguments=10 * GB,
                                outputs=0, aliased=0, temporaries=90 * GB, capacity=16 * GB)
  monkeypatch.setattr(memory_plan, "measure", lambda *args: over)
  compiled = []
  changes = (memory_plan.Change(f"--change={i}", lambda i=i: compiled.append(i) or
                                (None, {}, {})) for i in range(35))
  error = memory_plan.refusal(over, changes, budget_s=60)
  assert len(compiled) == 7  # the clock read before each: 10, 20, ... 70 s > 60 s
  assert str(error).endswith("does not fit; none of the 7 cheapest changes fits (tried for "
                             "60 s): more devices, a shorter config.data.seq_len, or fewer "
                             "rows a device")
