"""A run's start: a workdir of another run refused, the memory plan, then a fresh state or
the latest checkpoint's."""
import dataclasses
import json
import os
from typing import Any, Callable

import jax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from gram_jax import checkpoint, storage
from gram_jax.checkpoint import RunCheckpointer, write_run_files
from gram_jax.data.loader import ShuffledCursor
from gram_jax.errors import GramError
from gram_jax.models import lora
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import abstract_model
from gram_jax.training import memory_plan, train_step
from gram_jax.training.settings import Training


@dataclasses.dataclass
class Started:
  """A run ready to step: its state at `step` of `settings.steps`, the compiled step (None
  when the run is already finished) and the checkpointer that saved what it resumed."""
  settings: Training
  trainer: train_step.Trainer
  graphdef: nnx.GraphDef
  model_config: ModelConfig
  checkpointer: RunCheckpointer
  state: dict
  step: int
  step_fn: Callable | None


def start(settings: Training, mesh: Mesh, model_config: ModelConfig, tokenizer: Any,
          batches: ShuffledCursor, objective: train_step.Objective,
          init_params: Callable[[], dict]) -> Started:
  """Plans the step's memory (a plan that cannot fit, or `settings.dry_run`, stops here
  before anything is written), records the run, then restores the workdir's latest checkpoint
  (the data replayed to its position) or makes a fresh state from `init_params()`."""
  workdir, steps = settings.workdir, settings.steps
  logging.info("%s: %d examples on this host, %d rows of %d positions an epoch, %.1f%% padding",
               workdir, len(batches.data), batches.rows_per_epoch(), batches.seq_len,
               100 * batches.padding_fraction())
  check_resumable(workdir, model_config, settings.result_fields)
  graphdef, abstract = abstract_model(model_config)

  def make_trainer(config: ModelConfig, moment_dtype: str = settings.optimizer.moment_dtype,
                   with_lora: lora.Lora | None = settings.lora, on_mesh: Mesh = mesh):
    tx, schedule = train_step.make_optimizer(settings.optimizer, steps, moment_dtype)
    return train_step.Trainer.create(*abstract_model(config), tx, schedule, objective, on_mesh,
                                     settings.rules, with_lora)

  trainer = make_trainer(model_config)
  plan = lambda: planned_step(settings, model_config, trainer, make_trainer, batches)
  if settings.dry_run:
    plan()  # raises DryRun before anything is written
  write_run_files(workdir, model_config, tokenizer, settings.run_config, settings.lora,
                  settings.base_model)
  saving = settings.checkpoints
  checkpointer = RunCheckpointer(os.path.join(workdir, checkpoint.RUN_CHECKPOINTS),
                                 saving.every_steps, saving.keep, saving.async_save)
  checkpointer.set_aside_incomplete()
  if saving.resume_step >= 0:
    checkpointer.fall_back(saving.resume_step)
  step = checkpointer.latest_step()
  step_fn = plan() if (step or 0) < steps else None  # a finished run compiles nothing
  if step is None:
    logging.info("%s: starting at step 0 of %d (no checkpoint in %s)", workdir, steps,
                 checkpointer.directory)
    state, step = trainer.init_state(init_params(), settings.seed), 0
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
  return Started(settings, trainer, graphdef, model_config, checkpointer, state, step, step_fn)


SHAPE_FIELDS = ("family", "vocab_size", "hidden_size", "intermediate_size", "num_layers",
                "num_heads", "num_kv_heads", "head_dim", "tie_word_embeddings", "qkv_bias",
                "qk_norm")


def check_resumable(workdir: str, model_config: ModelConfig,
                    result_fields: dict[str, Any]) -> None:
  """A workdir with checkpoints of another architecture, or of a run whose settings differ
  in a field that changes what it trains (`result_fields`: dotted path -> value, compared
  with the config.json the run recorded), is refused before anything is written: resuming
  would mix two runs (a smoke config once resumed a full run's prover at "step 600 of 300")."""
  saved_path = os.path.join(workdir, checkpoint.MODEL_CONFIG)
  checkpoints = os.path.join(workdir, checkpoint.RUN_CHECKPOINTS)
  if not (storage.isfile(saved_path) and storage.isdir(checkpoints) and any(
      name.isdigit() for name in storage.listdir(checkpoints))):
    return
  afresh = f"use a new config.workdir, or remove {checkpoints} to start afresh"
  saved = checkpoint.read_saved_model_config(workdir).to_dict()
  wanted = model_config.to_dict()
  changed = [f"{k} {saved[k]} -> {wanted[k]}" for k in SHAPE_FIELDS if saved[k] != wanted[k]]
  if changed:
    raise GramError(f"{workdir}: holds checkpoints of another model ({', '.join(changed)}); "
                    f"{afresh}, or the same model to resume")
  run_config = os.path.join(workdir, checkpoint.RUN_CONFIG)
  if not storage.isfile(run_config):
    return
  recorded = checkpoint.flat_fields(json.loads(storage.read_text(run_config)))
  roots = _moved_roots(str(recorded.get("workdir", workdir)), workdir)
  changed = [f"{k} {json.dumps(recorded[k])} -> {json.dumps(v)}"
             for k, v in sorted(result_fields.items())
             if k in recorded and not _same_setting(recorded[k], v, roots)]
  if changed:
    raise GramError(f"{workdir}: holds checkpoints of a run with other settings "
                    f"({', '.join(changed)}); resuming would mix the two: {afresh}, or the "
                    "same settings to resume")


def _moved_roots(old: str, new: str) -> tuple[str, str]:
  """Where a copied or moved run directory came from and went: the old and new workdir
  with their common trailing folders removed (runs/a/prover -> runs/b/prover: runs/a and
  runs/b), so paths a run made inside itself (a self-training job's tokenizer and rounds)
  compare by where they lie in it."""
  old, new = storage.absolute(old).rstrip("/"), storage.absolute(new).rstrip("/")
  while (old != new and os.path.basename(old) == os.path.basename(new) and
         os.path.dirname(old) not in (old, "") and os.path.dirname(new) not in (new, "")):
    old, new = os.path.dirname(old), os.path.dirname(new)
  return old, new


def _same_setting(recorded: Any, value: Any, roots: tuple[str, str]) -> bool:
  """Equal, or paths at the same place inside a run directory that was copied or moved."""
  if recorded == value:
    return True
  old, new = roots
  if isinstance(recorded, str) and isinstance(value, str) and old != new:
    inside = lambda path, root: path.startswith(root + "/")
    return (inside(recorded, old) and inside(value, new) and
            recorded[len(old):] == value[len(new):])
  return False


def planned_step(settings: Training, model_config: ModelConfig,
                 trainer: train_step.Trainer, make_trainer: Callable, batches: ShuffledCursor
                 ) -> Callable:
  """The step compiled for the real mesh, after its memory plan is logged; a plan over
  the device's capacity stops here, before any weight is loaded, naming a change that fits.
  `settings.dry_run` stops after the plan."""
  capacity = memory_plan.device_capacity(settings.memory_capacity_gb)

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
    raise memory_plan.refusal(plan, settings.memory_advice(model_config, make_trainer, batches,
                                                           compiled, trainer.mesh))
  if settings.dry_run:
    raise memory_plan.DryRun(plan.line())
  return step


def resumed_line(step: int, steps: int, position: dict[str, int], directory: str) -> str:
  """What a resumed run says first: where it picks up, in steps, data and checkpoints."""
  return (f"resumed at step {step} of {steps} from the checkpoint in {directory}; data "
          f"position: epoch {position['epoch']}, example {position['cursor']} of the epoch")
