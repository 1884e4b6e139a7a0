"""The changes a refused memory plan tries, in order: the mechanism, without compiling."""
import types

import jax

from gram_jax import configlib
from gram_jax.models.config import tiny_config
from gram_jax.stages import memory_advice


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
