"""The training loop every training stage shares: resume, step, log, checkpoint, finish.

The caller hands in how to make the initial params (called only when there is no checkpoint
to resume) and hooks that run every N steps (evaluation, say); the run directory's layout
belongs to `gram_jax.checkpoint`.
"""
import dataclasses
import os
import time
from typing import Any, Callable, Iterator, Sequence

import jax
from absl import logging
from flax import nnx
import ml_collections
import numpy as np
from jax.sharding import Mesh

from gram_jax import checkpoint, configlib, parallel, preemption
from gram_jax.checkpoint import RunCheckpointer, check_resumable, write_run_files
from gram_jax.data.loader import ShuffledCursor
from gram_jax.errors import GramError
from gram_jax.models import lora
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import abstract_model
from gram_jax.training import flops, memory_plan, train_step
from gram_jax.training.metrics import MetricsLogger


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


@dataclasses.dataclass(frozen=True)
class Hook:
  """`run(graphdef, params)` every `every` steps (0: only at the end) and after the last step;
  the numbers it returns go to <name>_metrics.jsonl."""
  name: str
  run: Callable[[nnx.GraphDef, dict], dict]
  every: int = 0

  def due(self, step: int, last_step: int) -> bool:
    return step == last_step or bool(self.every and step % self.every == 0)


def fit(c: ml_collections.ConfigDict, mesh: Mesh, model_config: ModelConfig, tokenizer: Any,
        batches: ShuffledCursor, objective: train_step.Objective, workdir: str,
        init_params: Callable[[], dict], hooks: Sequence[Hook] = ()) -> dict:
  """Trains to the configured length, resuming from workdir's latest checkpoint if any.

  `init_params()` makes the starting params (a pure dict on the mesh) of a fresh run.
  Returns the final params.
  """
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
  start = checkpointer.latest_step()
  step_fn = plan() if (start or 0) < steps else None  # a finished run compiles nothing
  if start is None:
    logging.info("%s: starting at step 0 of %d (no checkpoint in %s)", workdir, steps,
                 checkpointer.directory)
    state = trainer.init_state(init_params(), c.seed)
    start = 0
  else:
    state, meta = checkpointer.restore(
        start, trainer.abstract_state(nnx.to_pure_dict(abstract)))
    if trainer.lora:  # a checkpoint holds the adapters only: the base comes from its source
      state["frozen"] = trainer.frozen_base(init_params())
    batches.skip(start)
    if jax.process_count() == 1 and meta["data_position"] != batches.state():
      raise RuntimeError(f"data position after replay {batches.state()} differs from the "
                         f"checkpoint's {meta['data_position']}")
    logging.info("%s", resumed_line(start, steps, batches.state(), checkpointer.directory))
  token_flops = flops.training_flops_per_token(model_config, batches.seq_len)
  peak = flops.peak_flops_per_device(c.train.peak_flops_per_device)
  logger = MetricsLogger(workdir, steps, start, desc=f"train {workdir}")
  bad_steps = 0
  last_time = time.perf_counter()
  try:
    for step in range(start, steps):
      host_batch = next(batches)
      sources = batches.taken_sources()
      state, metrics = step_fn(state, trainer.put_batch(host_batch))
      metrics = jax.device_get(metrics)
      bad_steps = 0 if metrics["finite"] else bad_steps + 1
      if bad_steps:
        report_bad_step(step + 1, metrics, sources, bad_steps, c.train.max_bad_steps,
                        checkpointer)
      now = time.perf_counter()
      seconds, last_time = now - last_time, now
      positions = host_batch["input_ids"].size * jax.process_count()
      tokens = batches.count_tokens(host_batch) * jax.process_count()
      mfu = token_flops * positions / seconds / (peak * jax.device_count()) if peak else None
      logger.log(step + 1, {**metrics, "step_seconds": seconds, "tokens_per_second":
                            tokens / seconds, "mfu": mfu})
      meta = {"data_position": batches.state(), "step": step + 1}
      saved = not bad_steps and checkpointer.save(step + 1, state, meta,
                                                  force=step + 1 == steps)
      if saved:
        logger.flush()
      if preemption.should_stop(step + 1) and step + 1 < steps:
        if not saved:
          checkpointer.save(step + 1, state, meta, force=True)
        raise preemption.Preempted(f"checkpoint of step {step + 1} in {checkpointer.directory}")
      for hook in hooks:
        if hook.due(step + 1, steps):
          logger.log_extra(hook.name, step + 1, hook.run(graphdef, trainer.full_params(state)))
  except OSError as e:  # metrics or other files: the same clear error as for checkpoints
    raise GramError(f"{workdir}: cannot write ({e.strerror or e}); the last complete "
                    f"checkpoint is step {checkpointer.latest_step()}") from None
  finally:
    checkpointer.close()  # waits for the async save in flight: it lands whole or not at all
    logger.close()
  params = trainer.full_params(state)
  if trainer.lora and not checkpoint.is_model_checkpoint(
      os.path.join(workdir, checkpoint.MERGED, str(steps))):
    checkpoint.save_merged(workdir, steps, nnx.merge(graphdef, params))
  return params


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
    raise memory_plan.refusal(plan, _changes(c, model_config, make_trainer, batches, compiled,
                                             trainer.mesh))
  if c.dry_run:
    raise memory_plan.DryRun(plan.line())
  return step


def _changes(c: ml_collections.ConfigDict, model_config: ModelConfig, make_trainer: Callable,
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


def report_bad_step(step: int, metrics: dict, sources: list[str], bad_steps: int,
                    max_bad_steps: int, checkpointer: RunCheckpointer) -> None:
  """Logs a skipped update with its batch's records; too many in a row stop the run."""
  shown = ", ".join(sources[:16]) + (f" and {len(sources) - 16} more" if len(sources) > 16
                                     else "")
  logging.warning("step %d: non-finite loss %s or gradient norm %s; update not applied "
                  "(%d in a row); batch: %s", step, metrics["loss"], metrics["grad_norm"],
                  bad_steps, shown)
  if max_bad_steps and bad_steps >= max_bad_steps:
    checkpointer.wait()
    raise GramError(
        f"training stopped at step {step}: {bad_steps} consecutive steps with a non-finite "
        f"loss or gradient (config.train.max_bad_steps={max_bad_steps}); no update was "
        f"applied; last good checkpoint: step {checkpointer.latest_step()} in "
        f"{checkpointer.directory}; last bad batch: {shown}")
