"""A run's start: the memory plan, then a fresh state or the latest checkpoint's.

This is the one part of training that reads the run's config: it builds the trainer, phrases
memory-plan advice as config flags and records the config in the run directory. What the
step loop needs after that is in `Started.settings`.
"""
import dataclasses
import os
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from gram_jax import checkpoint, configlib, parallel
from gram_jax.checkpoint import RunCheckpointer, check_resumable, write_run_files
from gram_jax.data.loader import ShuffledCursor
from gram_jax.models import lora
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import abstract_model
from gram_jax.training import memory_plan, train_step


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the step loop and its standard hooks read of a run."""
  workdir: str
  steps: int  # the run's length; a resumed run continues to it
  max_bad_steps: int  # non-finite steps in a row before the run stops (0: never)
  peak_flops_per_device: float  # for MFU (0: from the device kind; none known: no MFU)

  @classmethod
  def of(cls, c: ml_collections.ConfigDict, workdir: str, steps: int) -> "Settings":
    return cls(workdir, steps, c.train.max_bad_steps, c.train.peak_flops_per_device)


@dataclasses.dataclass
class Started:
  """A run ready to step: its state at `step` of `settings.steps`, the compiled step (None
  when the run is already finished) and the checkpointer that saved what it resumed."""
  settings: Settings
  trainer: train_step.Trainer
  graphdef: nnx.GraphDef
  model_config: ModelConfig
  checkpointer: RunCheckpointer
  state: dict
  step: int
  step_fn: Callable | None


def lora_spec(c: ml_collections.ConfigDict) -> lora.Lora | None:
  """config.model.lora as a spec, or None when its rank is 0 (full training)."""
  if c.model.lora.rank <= 0:
    return None
  return lora.Lora(lora.parse_targets(c.model.lora.targets), c.model.lora.rank,
                   c.model.lora.alpha, c.model.lora.dropout, c.model.lora.quantize)


def total_steps(c: ml_collections.ConfigDict, batches: ShuffledCursor) -> int:
  if c.train.num_steps > 0:
    return int(c.train.num_steps)
  per_step = batches.rows * batches.micro_batches
  return max(1, int(np.ceil(c.train.num_epochs * batches.rows_per_epoch() / per_step)))


def start(c: ml_collections.ConfigDict, mesh: Mesh, model_config: ModelConfig, tokenizer: Any,
          batches: ShuffledCursor, objective: train_step.Objective, workdir: str,
          init_params: Callable[[], dict]) -> Started:
  """Plans the step's memory (a plan that cannot fit, or `config.dry_run`, stops here before
  anything is written), records the run, then restores workdir's latest checkpoint (the data
  replayed to its position) or makes a fresh state from `init_params()`."""
  steps = total_steps(c, batches)
  logging.info("%s: %d examples on this host, %d rows of %d positions an epoch, %.1f%% padding",
               workdir, len(batches.data), batches.rows_per_epoch(), batches.seq_len,
               100 * batches.padding_fraction())
  check_resumable(workdir, model_config)
  graphdef, abstract = abstract_model(model_config)
  adapters = lora_spec(c)

  def make_trainer(config: ModelConfig, moment_dtype: str = c.train.moment_dtype,
                   with_lora: lora.Lora | None = adapters, on_mesh: Mesh = mesh):
    tx, schedule = train_step.make_optimizer(c.train, steps, moment_dtype)
    return train_step.Trainer.create(*abstract_model(config), tx, schedule, objective, on_mesh,
                                     tuple(c.rules), with_lora)

  trainer = make_trainer(model_config)
  plan = lambda: planned_step(c, model_config, trainer, make_trainer, batches)
  if c.dry_run:
    plan()  # raises DryRun before anything is written
  write_run_files(workdir, model_config, tokenizer, c)
  checkpointer = RunCheckpointer(os.path.join(workdir, checkpoint.RUN_CHECKPOINTS),
                                 c.checkpoint.every_steps, c.checkpoint.keep,
                                 c.checkpoint.async_save)
  step = checkpointer.latest_step()
  step_fn = plan() if (step or 0) < steps else None  # a finished run compiles nothing
  if step is None:
    logging.info("%s: starting at step 0 of %d (no checkpoint in %s)", workdir, steps,
                 checkpointer.directory)
    state, step = trainer.init_state(init_params(), c.seed), 0
  else:
    state, meta = checkpointer.restore(
        step, trainer.abstract_state(nnx.to_pure_dict(abstract)))
    if trainer.lora:  # a checkpoint holds the adapters only: the base comes from its source
      state["frozen"] = trainer.frozen_base(init_params())
    batches.skip(step)
    if jax.process_count() == 1 and meta["data_position"] != batches.state():
      raise RuntimeError(f"data position after replay {batches.state()} differs from the "
                         f"checkpoint's {meta['data_position']}")
    logging.info("%s", resumed_line(step, steps, batches.state(), checkpointer.directory))
  return Started(Settings.of(c, workdir, steps), trainer, graphdef, model_config, checkpointer,
                 state, step, step_fn)


def planned_step(c: ml_collections.ConfigDict, model_config: ModelConfig,
                 trainer: train_step.Trainer, make_trainer: Callable, batches: ShuffledCursor
                 ) -> Callable:
  """The step compiled for the real mesh, after its memory plan is logged; a plan over
  the device's capacity stops here, before any weight is loaded, naming a change that fits.
  `config.dry_run` stops after the plan."""
  capacity = memory_plan.device_capacity(c.train.memory_capacity_gb)

  def compiled(trainer: train_step.Trainer, micro_batches: int, rows: int):
    state = trainer.abstract_state(nnx.to_pure_dict(abstract_model(model_config)[1]))
    batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((x.shape[0], x.shape[1] * jax.process_count(),
                                        *x.shape[2:]), x.dtype, sharding=trainer.batch_sharding),
        batches.empty_batch(micro_batches, rows))
    return trainer.compile_step().lower(state, batch).compile(), state, batch

  step, state, batch = compiled(trainer, batches.micro_batches, batches.rows)
  plan = memory_plan.measure(step, state, batch, capacity)
  logging.info("%s", plan.line())
  if not plan.fits():
    raise memory_plan.refusal(plan, changes(c, model_config, make_trainer, batches, compiled,
                                            trainer.mesh))
  if c.dry_run:
    raise memory_plan.DryRun(plan.line())
  return step


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
  data_parallel = configlib.data_parallel_size(c)
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


def resumed_line(step: int, steps: int, position: dict[str, int], directory: str) -> str:
  """What a resumed run says first: where it picks up, in steps, data and checkpoints."""
  return (f"resumed at step {step} of {steps} from the checkpoint in {directory}; data "
          f"position: epoch {position['epoch']}, example {position['cursor']} of the epoch")
