"""A stage's config assembled from its sections (`gram_jax.config`), validated before anything
is built, and described in one start-up line.

Each `configs/<stage>.py` starts from `base_config(stage)` (or `judge_reader_config`) and
adds its own section; every field can be overridden on the command line
(`--config.train.learning_rate=1e-5`). `validate` runs before any model is built or
compiled, so a wrong mesh, batch or path fails in seconds with one clear line.
"""
import json
import os
from typing import Any, Callable

import jax
import ml_collections

from gram_jax import checkpoint, storage
from gram_jax.config import (best_of_n, data, evaluation, mesh, model, reasoning, self_train,
                             serve, template, train)
from gram_jax.config.data import named_files
from gram_jax.config.rules import Rule, field_value, one_of
from gram_jax.data import sources
from gram_jax.errors import GramError

STAGES = ("pretrain", "finetune", "prover", "self_train", "evaluate", "serve", "best_of_n")
TRAINING_STAGES = ("pretrain", "finetune", "prover", "self_train")


def base_config(stage: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.workdir = os.path.join("workdir", stage)
  c.seed = 0
  c.dry_run = False  # training stages: log the step's memory plan per device, then exit
  # XLA's compiled programs kept across runs (JAX's persistent cache): a rerun, a resumed
  # run or a restarted server with the same shapes skips those compiles. "": off. The
  # JAX_COMPILATION_CACHE_DIR variable, when set, wins.
  c.compilation_cache = os.path.join("~", ".cache", "gram_jax", "jax_compilation_cache")
  model.add_defaults(c)
  mesh.add_defaults(c)
  data.add_defaults(c)
  train.add_defaults(c)
  template.add_defaults(c)
  evaluation.add_defaults(c)
  train.add_checkpoint_defaults(c)
  mesh.add_distributed_defaults(c)
  return c


def judge_reader_config(stage: str) -> ml_collections.ConfigDict:
  """base_config for a stage that reads a saved judge (evaluate, serve, best_of_n): labels
  and reasoning left to the model's judge card unless set."""
  c = base_config(stage)
  c.template.labels = ()  # the judge card's, else ("A", "B")
  reasoning.add_defaults(c)  # a GRAM-R² judge: votes, temperature, orders, score
  return c


def demo_recipe(c: ml_collections.ConfigDict, *fields: str) -> None:
  """Marks `fields` as the demo recipe's (a tiny model from scratch on the built-in task,
  where a stage config with no preset puts them): their values now are demo values, which a
  run with a real model.path may not inherit (`validate` refuses until each is set or a
  preset is named)."""
  c.demo_fields = tuple((field, field_value(c, field)) for field in fields)


def describe(c: ml_collections.ConfigDict, config_arg: str = "") -> str:
  """The start-up line: what this run is (stage, config and preset, model, devices and mesh,
  compute dtype, attention, prompt and chat template, workdir)."""
  devices = jax.devices()
  shape = " ".join(f"{name}={size}" for name, size in mesh.device_mesh(c).shape.items())
  if c.model.path:
    name = c.model.path
  else:
    i = c.model.init
    name = (f"tiny {i.family} from scratch ({i.num_layers} layers, width {i.hidden_size}, "
            f"built-in tokenizer)")
  named = lambda text: text if len(text) <= 40 and "\n" not in text else \
      f"given as text ({len(text)} characters)"
  if c.stage == "pretrain":
    prompt = "GRAM pre-training"
  elif c.stage == "prover":
    prompt = f"prover {named(c.template.prover)}"
  elif c.template.judge == "auto":
    prompt = "auto (the judge card's)"
  else:
    prompt = named(c.template.judge)
  chat = "set in config" if c.tokenizer.chat_template else "the tokenizer's own"
  return (f"run: stage {c.stage} | config {config_arg or '?'} | model {name} | "
          f"{len(devices)} {devices[0].platform} device(s), {jax.process_count()} process(es), "
          f"mesh {shape} | compute {model.compute_dtype(c)}, attention {c.model.attention} | "
          f"prompt template {prompt}, chat template {chat} | workdir {c.workdir}")


def check_writable(workdir: str) -> None:
  """Creates the output directory and writes a probe file: a run must not train for hours
  and then fail to save."""
  storage.check_reachable(workdir, "config.workdir")
  probe = os.path.join(workdir, f".write_test.{jax.process_index()}.{os.getpid()}")
  try:
    storage.makedirs(workdir)
    storage.write_atomic(probe, "ok")
    storage.remove(probe)
  except GramError as e:
    raise GramError(f"config.workdir: {workdir}: not writable ({e})") from None
  except OSError as e:
    raise GramError(f"config.workdir: {workdir}: not writable ({e.strerror or e})") from None


# Fields a run may change when it resumes: they decide how a step is computed, checkpointed,
# evaluated or reported, not what it trains (micro-batches and kernels compute the same sums).
RESUME_NEUTRAL = ("workdir", "dry_run", "demo_fields", "compilation_cache", "mesh.", "dcn_mesh.", "rules",
                  "distributed.", "checkpoint.", "eval.", "model.remat", "model.attention",
                  "train.micro_batches", "train.memory_capacity_gb",
                  "train.peak_flops_per_device", "train.max_bad_steps", "train.loss_chunk_len",
                  "self_train.")  # a self-training job's sub-runs carry their own train.*


def result_fields(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields whose change makes a checkpoint another run's: a run resumes only under the
  same values (RESUME_NEUTRAL excepted)."""
  flat = checkpoint.flat_fields(json.loads(c.to_json_best_effort()))
  return {k: v for k, v in flat.items()
          if not any(k == n or (n.endswith(".") and k.startswith(n)) for n in RESUME_NEUTRAL)}


# Every single-field rule, section by section (a stage's config is checked on the fields it
# has).
FIELD_RULES: dict[str, Rule] = {
    "stage": one_of(*STAGES),
    **model.RULES, **data.RULES, **train.RULES, **evaluation.RULES, **serve.RULES,
    **self_train.RULES, **best_of_n.RULES,
}


def _check_stage_inputs(c: ml_collections.ConfigDict) -> None:
  """A reader stage names its model; evaluate names its files."""
  if c.stage in ("evaluate", "serve", "best_of_n") and not c.model.path:
    raise GramError(f"config.model.path: required for stage {c.stage}")
  if c.stage == "evaluate" and not named_files(c.eval.files):
    raise GramError("config.eval.files: required for stage evaluate")


def _check_no_demo_recipe(c: ml_collections.ConfigDict) -> None:
  """A real model never trains with a demo value it did not ask for (the compact prompt, a
  from-scratch learning rate, a 64-token cutoff): name a preset or set the field."""
  if not c.model.path or c.stage not in TRAINING_STAGES:
    return
  kept = [(field, value) for field, value in c.get("demo_fields", ())
          if field_value(c, field) == value]
  if kept:
    values = ", ".join(f"{field}={value!r}" for field, value in kept)
    raise GramError(
        f"config.model.path: configs/{c.stage}.py without a preset is the demo recipe for a "
        f"tiny model from scratch, and this run would keep its {values}; name a preset for a "
        f"real model (--config=configs/{c.stage}.py:{model.SMOLLM2}; presets: "
        f"{', '.join(model.MODEL_PRESETS)}) or set those fields")


# Checks across fields, in the order they run (each names the fields at fault).
CROSS_FIELD_CHECKS: tuple[Callable[[ml_collections.ConfigDict], None], ...] = (
    model.check_lora, data.check_orders_and_lengths, _check_no_demo_recipe,
    _check_stage_inputs, best_of_n.check_input, self_train.check_judge_sampling,
    reasoning.check_reasoning)


def validate(c: ml_collections.ConfigDict) -> None:
  """Every check that can fail before compiling, with the field at fault in the message:
  single fields (FIELD_RULES), then settings that depend on each other
  (CROSS_FIELD_CHECKS), then paths, data files and devices."""
  for path, rule in FIELD_RULES.items():
    try:
      problem = rule(field_value(c, path))
    except KeyError:
      continue
    if problem:
      raise GramError(f"config.{path}: {problem}")
  for check in CROSS_FIELD_CHECKS:
    check(c)
  _check_paths_and_devices(c)
  _check_data_files(c)
  if c.stage != "serve":
    check_writable(c.workdir)


def _check_paths_and_devices(c: ml_collections.ConfigDict) -> None:
  paths = [(c.workdir, "config.workdir"), (c.model.path, "config.model.path"),
           (c.tokenizer.path, "config.tokenizer.path")]
  if c.stage == "best_of_n":
    paths.append((c.best_of_n.output, "config.best_of_n.output"))
  for value, field in paths:
    storage.check(value, field)
  if c.stage in TRAINING_STAGES:
    storage.check_checkpoints(c.workdir, "config.workdir")
  for value, field in paths:
    storage.check_reachable(value, field)
  if c.model.path and not storage.isdir(c.model.path):
    build = [command for hf_dir, command in model.OFFLINE_MODELS.values()
             if c.model.path == hf_dir()]
    hint = f"; build it once with: python -c '{build[0]}'" if build else ""
    raise GramError(f"config.model.path: {c.model.path}: directory not found{hint}")
  mesh.data_parallel_size(c)  # checks the mesh against the devices
  if c.stage in TRAINING_STAGES:
    train.rows_per_process(c)


def _check_data_files(c: ml_collections.ConfigDict) -> None:
  """Every data file named: a usable scheme, reachable, and there."""
  fields = [("data.train_files", c.data.train_files), ("eval.files", c.eval.files)]
  if c.stage == "self_train":
    fields += self_train.files(c)
  if c.stage == "best_of_n":
    fields.append(("best_of_n.input", c.best_of_n.input))
  for field, value in fields:
    for path in named_files(value):
      storage.check(path, f"config.{field}", data=True)
      storage.check_reachable(path, f"config.{field}")
      try:
        sources.check_exists(path)
      except GramError as e:
        raise GramError(f"config.{field}: {e}") from None
