"""The training loop every training stage shares: resume, step, log, checkpoint, finish.

A run directory (`workdir`) holds model_config.json, tokenizer/, checkpoints/<step>/ and the
metrics; `gram_jax.load_pretrained(workdir)` and `gram_jax.convert --src=workdir` read it.
"""
import json
import os
import time
from typing import Any, Callable

import jax
from absl import logging
from flax import nnx
import ml_collections
import numpy as np
from jax.sharding import Mesh

from gram_jax import flops, model_setup, preemption, train
from gram_jax.checkpoint import MODEL_CONFIG, read_model_config
from gram_jax.data.loader import ShuffledCursor
from gram_jax.errors import GramError
from gram_jax.metrics import MetricsLogger
from gram_jax.models.config import ModelConfig
from gram_jax.pretrained import RUN_CHECKPOINTS
from gram_jax.run_checkpoint import RunCheckpointer


def write_run_files(workdir: str, cfg: ModelConfig, tokenizer: Any,
                    config: ml_collections.ConfigDict) -> None:
  """model_config.json, tokenizer/ and config.json: what makes `workdir` loadable."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, MODEL_CONFIG), "w") as f:
    json.dump(cfg.to_dict(), f, indent=2)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  tokenizer.save_pretrained(os.path.join(workdir, "tokenizer"))


SHAPE_FIELDS = ("family", "vocab_size", "hidden_size", "intermediate_size", "num_layers",
                "num_heads", "num_kv_heads", "head_dim", "tie_word_embeddings", "qkv_bias",
                "qk_norm")


def check_resumable(workdir: str, cfg: ModelConfig) -> None:
  """A workdir with checkpoints of another architecture is refused before anything is
  written (model_config.json would otherwise be replaced by the new, mismatching one)."""
  saved_path = os.path.join(workdir, MODEL_CONFIG)
  checkpoints = os.path.join(workdir, RUN_CHECKPOINTS)
  if not (os.path.isfile(saved_path) and os.path.isdir(checkpoints) and any(
      name.isdigit() for name in os.listdir(checkpoints))):
    return
  saved = read_model_config(workdir).to_dict()
  wanted = cfg.to_dict()
  changed = [f"{k} {saved[k]} -> {wanted[k]}" for k in SHAPE_FIELDS if saved[k] != wanted[k]]
  if changed:
    raise GramError(f"{workdir}: holds checkpoints of another model ({', '.join(changed)}); "
                    "use a new config.workdir, or the same model to resume")


def total_steps(c: ml_collections.ConfigDict, batches: ShuffledCursor) -> int:
  if c.train.num_steps > 0:
    return int(c.train.num_steps)
  per_step = batches.rows * batches.micro_batches
  return max(1, int(np.ceil(c.train.num_epochs * batches.rows_per_epoch() / per_step)))


def fit(c: ml_collections.ConfigDict, mesh: Mesh, cfg: ModelConfig, tokenizer: Any,
        batches: ShuffledCursor, objective: train.Objective, workdir: str,
        evaluate: Callable[[nnx.GraphDef, dict], dict] | None = None,
        eval_every: int = 0) -> dict:
  """Trains to the configured length, resuming from workdir's latest checkpoint if any.

  `evaluate(graphdef, params)` runs every `eval_every` steps and at the end; its numbers go
  to eval_metrics.jsonl. Returns the final params (a pure dict on the mesh).
  """
  steps = total_steps(c, batches)
  check_resumable(workdir, cfg)
  write_run_files(workdir, cfg, tokenizer, c)
  graphdef, abstract = model_setup.abstract_state(cfg)
  tx, schedule = train.make_optimizer(c.train, steps)
  trainer = train.Trainer.create(graphdef, abstract, tx, schedule, objective, mesh,
                                 tuple(c.rules))
  checkpointer = RunCheckpointer(os.path.join(workdir, RUN_CHECKPOINTS),
                                 c.checkpoint.every_steps, c.checkpoint.keep,
                                 c.checkpoint.async_save)
  start = checkpointer.latest_step()
  if start is None:
    state = trainer.init_state(model_setup.initial_params(c, cfg, mesh), c.seed)
    start = 0
  else:
    state, meta = checkpointer.restore(
        start, trainer.abstract_state(nnx.to_pure_dict(abstract)))
    batches.skip(start)
    if jax.process_count() == 1 and meta["data_position"] != batches.state():
      raise RuntimeError(f"data position after replay {batches.state()} differs from the "
                         f"checkpoint's {meta['data_position']}")
  step_fn = trainer.compile_step()
  token_flops = flops.training_flops_per_token(cfg, batches.seq_len)
  peak = flops.peak_flops_per_device(c.train.peak_flops_per_device)
  logger = MetricsLogger(workdir, steps, start)
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
      if preemption.should_stop(step + 1) and step + 1 < steps:
        if not saved:
          checkpointer.save(step + 1, state, meta, force=True)
        raise preemption.Preempted(f"checkpoint of step {step + 1} in {checkpointer.directory}")
      if evaluate and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == steps):
        logger.log_extra("eval", step + 1, evaluate(graphdef, state["params"]))
  except OSError as e:  # metrics or other files: the same clear error as for checkpoints
    raise GramError(f"{workdir}: cannot write ({e.strerror or e}); the last complete "
                    f"checkpoint is step {checkpointer.latest_step()}") from None
  finally:
    checkpointer.close()  # waits for the async save in flight: it lands whole or not at all
    logger.close()
  return state["params"]


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
