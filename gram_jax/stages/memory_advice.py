"""The memory plan's advice in the config's own words: what the user could change when the
step does not fit, cheapest first, each as the flags to type and a way to compile it (the
plan compiles each until one fits)."""
import dataclasses
from typing import Callable, Iterator

import jax
import ml_collections
from jax.sharding import Mesh

from gram_jax import parallel
from gram_jax.config.mesh import data_parallel_size
from gram_jax.config.model import lora_spec
from gram_jax.data.loader import ShuffledCursor
from gram_jax.models import lora
from gram_jax.models.config import ModelConfig
from gram_jax.training import memory_plan


def changes(c: ml_collections.ConfigDict, model_config: ModelConfig, make_trainer: Callable,
             batches: ShuffledCursor, compiled: Callable,
             mesh: Mesh) -> Iterator[memory_plan.Change]:
  """What the user could change, cheapest first: the state sharded over the devices that hold
  copies of it (the same math); remat, bfloat16 Adam moments, both; then more micro-batches
  (the same rows a step) alone and with those; then LoRA; then QLoRA."""
  if mesh.shape["data"] > 1 and c.mesh.tensor != -1:
    sharded = parallel.make_mesh({**c.mesh.to_dict(), "data": 1, "fsdp": -1},
                                 c.dcn_mesh.to_dict())
    yield memory_plan.Change("--config.mesh.data=1 --config.mesh.fsdp=-1", lambda: compiled(
        make_trainer(model_config, on_mesh=sharded), batches.micro_batches, batches.rows))
  settings = [("", model_config, c.train.moment_dtype)]
  if model_config.remat != "full":
    settings.append(("--config.model.remat=full ",
                     dataclasses.replace(model_config, remat="full"), c.train.moment_dtype))
  if c.train.moment_dtype != "bfloat16":
    settings += [(flags + "--config.train.moment_dtype=bfloat16 ", config, "bfloat16")
                 for flags, config, _ in list(settings)]
  for flags, config, moments in settings[1:]:
    yield memory_plan.Change(flags.strip(), lambda config=config, moments=moments: compiled(
        make_trainer(config, moments), batches.micro_batches, batches.rows))
  data_parallel = data_parallel_size(c)
  factor = 2
  while batches.rows % factor == 0 and (batches.rows // factor * jax.process_count()) % \
      data_parallel == 0:
    micro, rows = batches.micro_batches * factor, batches.rows // factor
    split = f"--config.train.micro_batches={micro}"
    if c.train.global_batch_size <= 0:  # the same rows a step: fewer a device, more micro
      split += f" --config.train.per_device_batch_size={c.train.per_device_batch_size // factor}"
    for flags, config, moments in settings:
      yield memory_plan.Change(flags + split, lambda config=config, moments=moments,
                               micro=micro, rows=rows: compiled(make_trainer(config, moments),
                                                                micro, rows))
    factor *= 2
  # a different method, so last: adapters on every projection, then over a 4-bit base
  adapters, lora_flags = lora_spec(c), ""
  if adapters is None:
    adapters = lora.Lora(tuple(lora.TARGETS), 16, 32.0)
    lora_flags = "--config.model.lora.rank=16 --config.model.lora.alpha=32"
    for flags, config, moments in settings:
      yield memory_plan.Change(flags + lora_flags, lambda config=config, moments=moments:
                               compiled(make_trainer(config, moments, adapters),
                                        batches.micro_batches, batches.rows))
  if not adapters.quantize:
    quantized = dataclasses.replace(adapters, quantize="nf4")
    for flags, config, moments in settings:
      yield memory_plan.Change(
          " ".join(filter(None, (flags.strip(), lora_flags,
                                 "--config.model.lora.quantize=nf4"))),
          lambda config=config, moments=moments: compiled(
              make_trainer(config, moments, quantized), batches.micro_batches, batches.rows))
