"""The training loop every training stage shares: start or resume (`resume.start`), then step
to the end with hooks — `add_hook(fn, every=n)` — for what happens between steps: throughput
and MFU, the metrics log, checkpoints and preemption, evaluations.

The stage hands in its typed settings (`settings.Training`, built from its config), how to
make the initial params (called only when there is no checkpoint to resume) and evaluations
to run every N steps; the run directory's layout belongs to `gram_jax.checkpoint`.
"""
import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh
from absl import logging

from gram_jax import checkpoint, preemption, storage
from gram_jax.checkpoint import RunCheckpointer
from gram_jax.data.loader import ShuffledCursor
from gram_jax.errors import GramError
from gram_jax.models.config import ModelConfig
from gram_jax.training import flops, resume, train_step
from gram_jax.training.metrics import MetricsLogger
from gram_jax.training.settings import Training


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """`run(graphdef, params, step)` every `every` steps (0: only at the end), after the last
  step and, when `at_start`, before a fresh run's first step (step 0: the starting model);
  the numbers it returns go to <name>_metrics.jsonl."""
  name: str
  run: Callable[[nnx.GraphDef, dict, int], dict]
  every: int = 0
  at_start: bool = False


def logged_evaluations(workdir: str, name: str) -> dict[int, dict]:
  """The figures of evaluation `name` a run already logged, by step."""
  path = os.path.join(workdir, f"{name}_metrics.jsonl")
  if not storage.exists(path):
    return {}
  entries = [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
  return {e["step"]: {k: v for k, v in e.items() if k != "step"} for e in entries}


def first_evaluation(workdir: str, name: str) -> dict:
  """The step-0 figures of evaluation `name` a run already logged (a resumed run keeps its
  starting model's figures), else an empty dict to be filled."""
  return logged_evaluations(workdir, name).get(0, {})


def due_on_start(evaluation: Evaluation, step: int, last_step: int, logged: set[int]) -> bool:
  """Whether `evaluation` runs before a run's first step: a fresh run's step 0 when
  `at_start`; for a resumed run, the evaluation due at its checkpoint's step that the
  stopped run never logged (it stopped between saving the checkpoint and evaluating), so
  a learning curve has no hole where a run was preempted."""
  if step == 0:
    return evaluation.at_start
  due = step == last_step or (evaluation.every > 0 and step % evaluation.every == 0)
  return due and step not in logged


@dataclasses.dataclass
class StepInfo:
  """A finished step as hooks see it. Hooks run in the order they were added; one may add
  numbers to `metrics` for those after it."""
  step: int  # steps done
  state: dict
  metrics: dict
  batch: dict  # the host's batch
  sources: list[str]  # the records it came from
  bad_steps: int  # non-finite steps in a row, this one included (its update was not applied)


class StepLoop:
  """Steps a started run to its end, calling each hook `fn(info)` after every `every`-th
  step (0: only the last) and after the last."""

  def __init__(self, run: resume.Started, batches: ShuffledCursor):
    self.run, self.batches = run, batches
    self.hooks: list[tuple[Callable[[StepInfo], None], int]] = []

  def add_hook(self, fn: Callable[[StepInfo], None], every: int = 1) -> None:
    self.hooks.append((fn, every))

  def steps(self) -> dict:
    """Runs the remaining steps; returns the final state."""
    run, last = self.run, self.run.settings.steps
    state, bad_steps = run.state, 0
    for step in range(run.step + 1, last + 1):
      host_batch = next(self.batches)
      sources = self.batches.taken_sources()
      state, metrics = run.step_fn(state, run.trainer.put_batch(host_batch))
      metrics = jax.device_get(metrics)
      bad_steps = 0 if metrics["finite"] else bad_steps + 1
      if bad_steps:
        report_bad_step(step, metrics, sources, bad_steps, run.settings.max_bad_steps,
                        run.checkpointer)
      info = StepInfo(step, state, metrics, host_batch, sources, bad_steps)
      for fn, every in self.hooks:
        if step == last or (every and step % every == 0):
          fn(info)
    return state


def fit(settings: Training, mesh: Mesh, model_config: ModelConfig, tokenizer: Any,
        batches: ShuffledCursor, objective: train_step.Objective,
        init_params: Callable[[], dict], evaluations: Sequence[Evaluation] = ()) -> dict:
  """Trains to `settings.steps`, resuming from the workdir's latest checkpoint if any.

  `init_params()` makes the starting params (a pure dict on the mesh) of a fresh run.
  Returns the final params.
  """
  return train(resume.start(settings, mesh, model_config, tokenizer, batches, objective,
                            init_params), batches, evaluations)


def train(run: resume.Started, batches: ShuffledCursor,
          evaluations: Sequence[Evaluation] = ()) -> dict:
  """Steps `run` to its end with the standard hooks and `evaluations`; a LoRA run's merged
  model is saved at the end. Returns the final params."""
  settings, checkpointer = run.settings, run.checkpointer
  logger = MetricsLogger(settings.workdir, settings.steps, run.step,
                         desc=f"train {settings.workdir}")
  loop = StepLoop(run, batches)
  loop.add_hook(throughput(run.model_config, batches, settings.peak_flops_per_device))
  loop.add_hook(lambda info: logger.log(info.step, info.metrics))
  loop.add_hook(checkpointing(checkpointer, batches, logger, settings.steps))
  for evaluation in evaluations:
    logged = set(logged_evaluations(settings.workdir, evaluation.name)) if run.step else set()
    if due_on_start(evaluation, run.step, settings.steps, logged):
      logger.log_extra(evaluation.name, run.step, evaluation.run(
          run.graphdef, run.trainer.full_params(run.state), run.step))
    loop.add_hook(lambda info, e=evaluation: logger.log_extra(
        e.name, info.step, e.run(run.graphdef, run.trainer.full_params(info.state),
                                 info.step)), every=evaluation.every)
  state = run.state
  try:
    state = loop.steps()
  except OSError as e:  # metrics or other files: the same clear error as for checkpoints
    raise GramError(f"{settings.workdir}: cannot write ({e.strerror or e}); the last complete "
                    f"checkpoint is step {checkpointer.latest_step()}") from None
  finally:
    checkpointer.close()  # waits for the async save in flight: it lands whole or not at all
    logger.close()
  params = run.trainer.full_params(state)
  if run.trainer.lora and not checkpoint.is_model_checkpoint(
      os.path.join(settings.workdir, checkpoint.MERGED, str(settings.steps))):
    checkpoint.save_merged(settings.workdir, settings.steps, nnx.merge(run.graphdef, params))
  return params


def throughput(model_config: ModelConfig, batches: ShuffledCursor,
               peak_flops_per_device: float) -> Callable[[StepInfo], None]:
  """Adds step_seconds, tokens_per_second (real tokens, all hosts) and MFU (over the padded
  positions; None when the device's peak is unknown) to each step's metrics."""
  token_flops = flops.training_flops_per_token(model_config, batches.seq_len)
  peak = flops.peak_flops_per_device(peak_flops_per_device)
  last_time = [time.perf_counter()]

  def measure(info: StepInfo) -> None:
    now = time.perf_counter()
    seconds, last_time[0] = now - last_time[0], now
    positions = info.batch["input_ids"].size * jax.process_count()
    tokens = batches.count_tokens(info.batch) * jax.process_count()
    mfu = token_flops * positions / seconds / (peak * jax.device_count()) if peak else None
    info.metrics.update(step_seconds=seconds, tokens_per_second=tokens / seconds, mfu=mfu)
  return measure


def checkpointing(checkpointer: RunCheckpointer, batches: ShuffledCursor,
                  logger: MetricsLogger, steps: int) -> Callable[[StepInfo], None]:
  """Saves at the checkpointer's interval and at the end (never a step whose update was
  skipped), making the metrics durable with each save; on preemption, saves and stops."""
  def save(info: StepInfo) -> None:
    meta = {"data_position": batches.state(), "step": info.step}
    saved = not info.bad_steps and checkpointer.save(info.step, info.state, meta,
                                                     force=info.step == steps)
    if saved:
      logger.flush()
    if preemption.should_stop(info.step) and info.step < steps:
      if not saved:
        checkpointer.save(info.step, info.state, meta, force=True)
      raise preemption.Preempted(f"checkpoint of step {info.step} in {checkpointer.directory}")
  return save


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
