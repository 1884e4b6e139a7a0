"""The run directory and model checkpoints: the one module that knows their layout.

A model checkpoint (`save_model`) is a directory:
  params/              Orbax checkpoint of the parameter tree
  model_config.json    ModelConfig fields
  tokenizer/           tokenizer files (optional)
A training run directory (`config.workdir`) holds model_config.json, config.json,
tokenizer/ and checkpoints/<step>/, each step with three Orbax items: `params`, `train`
(optimizer state, step, RNG) and `meta` (data position, anything JSON). Orbax writes each
step into a temporary directory and renames it when complete (on object storage, where there
is no rename, it writes a commit marker last), so a crash mid-save never produces a step that
`latest_step()` returns. Every path may be local or gs:// / s3:// (gram_jax.storage).
"""
import contextlib
import json
import os
from typing import Any, Mapping, Sequence

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from gram_jax import parallel, storage
from gram_jax.errors import GramError
from gram_jax.models import finite, lora
from gram_jax.models.config import ModelConfig, as_run
from gram_jax.models.decoder import Decoder, abstract_model

MODEL_CONFIG = "model_config.json"
RUN_CONFIG = "config.json"
LORA_SPEC = "lora.json"  # a LoRA run's adapters (targets, rank, alpha, ...) and base model
PARAMS = "params"
TOKENIZER = "tokenizer"
RUN_CHECKPOINTS = "checkpoints"
MERGED = "merged"  # a LoRA run's finished models, base + adapters: merged/<step>/


def is_model_checkpoint(path: str) -> bool:
  return (storage.isfile(os.path.join(path, MODEL_CONFIG)) and
          storage.isdir(os.path.join(path, PARAMS)))


def is_run_dir(path: str) -> bool:
  return (storage.isfile(os.path.join(path, MODEL_CONFIG)) and
          storage.isdir(os.path.join(path, RUN_CHECKPOINTS)))


def tokenizer_dir(path: str) -> str:
  """Where the tokenizer of a checkpoint or run directory lives (an HF directory: itself)."""
  nested = os.path.join(path, TOKENIZER)
  return nested if storage.isdir(nested) else path


def read_saved_model_config(path: str) -> ModelConfig:
  """model_config.json of a gram_jax checkpoint or run directory."""
  config_path = os.path.join(path, MODEL_CONFIG)
  try:
    return ModelConfig.from_dict(json.loads(storage.read_text(config_path)))
  except (OSError, json.JSONDecodeError, ValueError, TypeError) as e:
    raise GramError(f"{config_path}: cannot read model config ({e})") from None


def save_tokenizer(tokenizer: Any, path: str) -> None:
  """tokenizer.save_pretrained to a local or object-storage directory."""
  with storage.local_mirror(path) as local:
    tokenizer.save_pretrained(local)


def save_model(model: Decoder, path: str, tokenizer: Any = None) -> str:
  """Writes a self-contained model checkpoint, complete or not there: model_config.json is
  its commit marker, written last (storage.staged_dir)."""
  storage.check_checkpoints(path, "model checkpoint")
  path = storage.absolute(path).rstrip("/")
  if storage.isdir(path) and storage.listdir(path) and not is_model_checkpoint(path):
    raise GramError(f"{path}: exists and is not a gram_jax checkpoint; refusing to replace it")
  writer = jax.process_index() == 0
  staged = (storage.staged_dir(path, MODEL_CONFIG) if writer
            else contextlib.nullcontext(storage.staging_path(path)))
  with staged as target:
    parallel.sync(f"save_model_cleared:{path}")  # the writer has removed the old files
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(target, PARAMS), params)
      checkpointer.wait_until_finished()
    if writer:
      if tokenizer is not None:
        save_tokenizer(tokenizer, os.path.join(target, TOKENIZER))
      storage.write_atomic(os.path.join(target, MODEL_CONFIG),
                           json.dumps(model.config.to_dict(), indent=2))
  parallel.sync(f"save_model:{path}")
  return path


def restore_target(abstract_state: nnx.State, mesh: Mesh | None,
                   rules: Sequence = parallel.DEFAULT_RULES) -> dict[Any, Any]:
  """A nested dict of ShapeDtypeStructs carrying the wanted shardings, for Orbax restore."""
  return jax.tree.map(lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
                      nnx.to_pure_dict(abstract_state),
                      parallel.param_shardings(abstract_state, mesh, rules))


def load_model(path: str, dtype: str | None = None, mesh: Mesh | None = None,
               compute_dtype: str | None = None, rules: Sequence = parallel.DEFAULT_RULES,
               attention: Mapping[str, Any] | None = None) -> Decoder:
  """Restores a model checkpoint directly onto its shardings (any mesh), run as
  `models.config.as_run` says."""
  storage.check_checkpoints(path, "model checkpoint")
  model_config = as_run(read_saved_model_config(path), dtype, compute_dtype, attention)
  graphdef, abstract_state = abstract_model(model_config)
  target = restore_target(abstract_state, mesh, rules)
  with ocp.StandardCheckpointer() as checkpointer:
    try:
      restored = checkpointer.restore(os.path.join(storage.absolute(path), PARAMS), target)
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise GramError(f"{path}: checkpoint does not match {MODEL_CONFIG} ({e})") from None
  finite.check_finite(finite.named_tensors(restored), path)
  nnx.replace_by_pure_dict(abstract_state, restored)
  return nnx.merge(graphdef, abstract_state)


def save_merged(workdir: str, step: int, model: Decoder) -> str:
  """A LoRA run's model at `step` (its checkpoints hold the adapters only)."""
  return save_model(model, os.path.join(workdir, MERGED, str(step)))


def run_lora(path: str) -> tuple[lora.Lora, str] | None:
  """The LoRA spec a run directory trained with and the base model its adapters adapt
  (lora.json), or None for full training. Runs written before lora.json existed recorded
  them only in their stage config: read there, from model.lora and model.path alone."""
  spec_path = os.path.join(path, LORA_SPEC)
  if storage.isfile(spec_path):
    values = json.loads(storage.read_text(spec_path))
    return lora.Lora.from_dict(values["adapters"]), values["base_model"]
  try:
    model = json.loads(storage.read_text(os.path.join(path, RUN_CONFIG)))["model"]
    values = model["lora"]
  except (OSError, ValueError, KeyError, TypeError):
    return None
  if not int(values.get("rank", 0)):
    return None
  return lora.Lora(lora.parse_targets(values["targets"]), int(values["rank"]),
                   float(values["alpha"]), float(values.get("dropout", 0.0)),
                   values.get("quantize", "")), model["path"]


def load_run_adapters(path: str) -> tuple[dict, lora.Lora, str]:
  """A LoRA run's adapters at its latest complete checkpoint, their spec, and the path of
  the base model they adapt (config.model.path)."""
  storage.check_checkpoints(path, "run directory")
  trained = run_lora(path)
  if trained is None:
    raise GramError(f"{path}: not a LoRA run (config.model.lora.rank is 0); its model exports "
                    "with --to=hf")
  spec, base_model = trained
  kernels = nnx.to_pure_dict(abstract_model(read_saved_model_config(path))[1])
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        jax.eval_shape(lambda: lora.init_adapters(
                            kernels, spec.targets, spec.rank, jax.random.key(0))))
  checkpointer = RunCheckpointer.reader(os.path.join(path, RUN_CHECKPOINTS))
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise GramError(f"{path}/{RUN_CHECKPOINTS}: no complete checkpoint")
    return checkpointer.restore_params(step, target), spec, base_model
  finally:
    checkpointer.close()


def load_run_model(path: str, dtype: str | None = None, mesh: Mesh | None = None,
                   compute_dtype: str | None = None, rules: Sequence = parallel.DEFAULT_RULES,
                   attention: Mapping[str, Any] | None = None) -> Decoder:
  """The model of a run directory's latest complete checkpoint, onto its shardings (a LoRA
  run's: the merged model it wrote when it finished that step), run as
  `models.config.as_run` says."""
  storage.check_checkpoints(path, "run directory")
  model_config = as_run(read_saved_model_config(path), dtype, compute_dtype, attention)
  checkpointer = RunCheckpointer.reader(os.path.join(path, RUN_CHECKPOINTS))
  step = checkpointer.latest_step()
  if step is None:
    raise GramError(f"{path}/{RUN_CHECKPOINTS}: no complete checkpoint")
  if run_lora(path) is not None:
    checkpointer.close()
    merged = os.path.join(path, MERGED, str(step))
    if not is_model_checkpoint(merged):
      raise GramError(f"{path}: a LoRA run whose checkpoints hold adapters only, and step "
                      f"{step} has no merged model in {merged} (written when the run "
                      "finishes): rerun the training command to finish it")
    return load_model(merged, dtype, mesh, compute_dtype, rules, attention)
  graphdef, abstract_state = abstract_model(model_config)
  params = checkpointer.restore_params(step, restore_target(abstract_state, mesh, rules))
  checkpointer.close()
  params = jax.tree.map(lambda x, t: x.astype(t.dtype), params,
                        nnx.to_pure_dict(abstract_state))
  return nnx.merge(graphdef, params)


def write_run_files(workdir: str, model_config: ModelConfig, tokenizer: Any,
                    run_config: str, adapters: lora.Lora | None = None,
                    base_model: str = "") -> None:
  """model_config.json, tokenizer/, config.json (the stage config, for people and resume
  checks) and, for a LoRA run, lora.json (the adapters' spec and the base model they
  adapt): what makes `workdir` loadable."""
  if jax.process_index() != 0:
    return
  storage.write_atomic(os.path.join(workdir, MODEL_CONFIG),
                       json.dumps(model_config.to_dict(), indent=2))
  storage.write_atomic(os.path.join(workdir, RUN_CONFIG), run_config)
  if adapters is not None:
    storage.write_atomic(os.path.join(workdir, LORA_SPEC), json.dumps(
        {"adapters": adapters.to_dict(), "base_model": base_model}, indent=2))
  save_tokenizer(tokenizer, os.path.join(workdir, TOKENIZER))


def flat_fields(values: dict, prefix: str = "") -> dict[str, Any]:
  """A nested config dict (as its JSON) as dotted path -> value."""
  flat = {}
  for key, value in values.items():
    if isinstance(value, dict):
      flat.update(flat_fields(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


STEP_FILES = ("params", "train", "meta")  # the items of a complete step


class _RestoreErrors(contextlib.AbstractContextManager):
  """A step that cannot be read (deleted or truncated arrays, a foreign layout) is one line
  naming it, the error's first line, and the step before it to fall back to."""

  def __init__(self, checkpointer: "RunCheckpointer", step: int):
    self.checkpointer, self.step = checkpointer, step

  def __exit__(self, kind, error, traceback) -> bool:
    if error is None or isinstance(error, GramError) or not isinstance(error, Exception):
      return False
    directory = self.checkpointer.directory
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    earlier = [s for s in self.checkpointer.complete_steps() if s < self.step]
    way_out = (f"the previous complete step is {earlier[-1]}: rerun with "
               f"--config.checkpoint.resume_step={earlier[-1]} to resume from it (the steps "
               "after it are set aside)" if earlier else "no earlier complete step")
    raise GramError(f"{directory}/{self.step}: cannot restore this checkpoint ({first}); "
                    f"{way_out}, or use a new config.workdir to start afresh") from None


class RunCheckpointer:
  """Orbax CheckpointManager over checkpoints/: async, keep-last-K, resume, reshard.

  Only the run's writer removes the temporary directories of unfinished steps; a reader
  (`reader()`: evaluate, export, a status query) must not, since the directory it reads may
  belong to a run still writing its next step there."""

  def __init__(self, directory: str, every_steps: int, keep: int, async_save: bool = True):
    self.directory = storage.absolute(directory)
    # Object storage has no atomic rename: commit each step with a marker written last.
    # Orbax picks this by itself for gs:// only; s3:// would otherwise get copy+delete.
    commit_file = ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=every_steps,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True,
        atomicity_options=commit_file if storage.is_remote(directory) else None)
    self._open(options)

  @classmethod
  def reader(cls, directory: str) -> "RunCheckpointer":
    """Reads steps and their arrays; never saves, deletes or cleans up."""
    checkpointer = cls.__new__(cls)
    checkpointer.directory = storage.absolute(directory)
    checkpointer._open(ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                                    max_to_keep=None, create=False,
                                                    cleanup_tmp_directories=False))
    return checkpointer

  def _open(self, options: ocp.CheckpointManagerOptions) -> None:
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("params", "train", "meta"))

  def complete_steps(self) -> list[int]:
    """Steps whose every item and Orbax's step metadata are there: a stray or half-deleted
    step folder (an empty `checkpoints/99`) is not a checkpoint."""
    return [step for step in sorted(self.manager.all_steps())
            if all(storage.exists(os.path.join(self.directory, str(step), name))
                   for name in STEP_FILES)]

  def latest_step(self) -> int | None:
    steps = self.complete_steps()
    return steps[-1] if steps else None

  def set_aside(self, steps: list[int]) -> str:
    """Moves step folders out of the checkpoint directory, into `<directory>_set_aside/`
    (process 0; every process waits for it), so that nothing reads or overwrites them;
    returns where."""
    aside = self.directory.rstrip("/") + "_set_aside"
    if jax.process_index() == 0:
      storage.makedirs(aside)
      for step in steps:
        target = os.path.join(aside, str(step))
        storage.rmtree(target)  # set aside before, by an earlier fall-back
        storage.move(os.path.join(self.directory, str(step)), target)
    parallel.sync(f"set_aside:{self.directory}")
    self.manager.reload()
    return aside

  def set_aside_incomplete(self) -> None:
    """The writer's start: step folders that are not complete checkpoints go aside (a save
    would otherwise collide with them when the run reaches their step)."""
    incomplete = sorted(set(self.manager.all_steps()) - set(self.complete_steps()))
    if incomplete:
      aside = self.set_aside(incomplete)
      logging.warning("%s: steps %s are incomplete (no %s): moved to %s", self.directory,
                      incomplete, " / ".join(STEP_FILES), aside)

  def fall_back(self, step: int) -> None:
    """Resumes from `step` (config.checkpoint.resume_step): the steps after it are set
    aside, the damaged one among them."""
    steps = self.complete_steps()
    if step not in steps:
      raise GramError(f"config.checkpoint.resume_step={step}: {self.directory} has no complete "
                      f"step {step} (complete steps: {steps or 'none'})")
    later = [s for s in self.manager.all_steps() if s > step]
    if later:
      logging.warning("%s: resuming from step %d; steps %s moved to %s", self.directory, step,
                      sorted(later), self.set_aside(later))

  def save(self, step: int, state: dict[str, Any], meta: dict[str, Any],
           force: bool = False) -> bool:
    """Starts an async save; a failed earlier save (disk full, ...) surfaces here."""
    train = {k: state[k] for k in ("opt_state", "step", "rng")}
    with self._write_errors():
      return self.manager.save(step, args=ocp.args.Composite(
          params=ocp.args.StandardSave(state["params"]), train=ocp.args.StandardSave(train),
          meta=ocp.args.JsonSave(meta)), force=force)

  @contextlib.contextmanager
  def _write_errors(self):
    """A write that failed (disk full, quota, I/O error) is one clear error; the step it was
    writing stays a temporary directory that no restore will ever pick."""
    try:
      yield
    except GramError:
      raise
    except Exception as e:  # Orbax/TensorStore raise ValueError, OSError, RuntimeError...
      reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
      if "No space left on device" in reason or "os_error_code='28'" in reason:
        reason = "no space left on device"
      raise GramError(f"{self.directory}: writing a checkpoint failed ({reason}); the last "
                      f"complete checkpoint is step {self.latest_step()}; free space and "
                      "rerun to resume from it") from None

  def restore(self, step: int, abstract_state: dict[str, Any]) -> tuple[dict, dict]:
    """Restores onto the shardings in `abstract_state` (any mesh)."""
    train_target = {k: abstract_state[k] for k in ("opt_state", "step", "rng")}
    with _RestoreErrors(self, step):
      restored = self.manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract_state["params"]),
          train=ocp.args.StandardRestore(train_target), meta=ocp.args.JsonRestore()))
    state = {"params": restored.params, **restored.train}
    finite.check_finite(finite.named_tensors(state), f"{self.directory}/{step}")
    return state, restored.meta

  def restore_params(self, step: int, abstract_params: dict[str, Any]) -> dict:
    with _RestoreErrors(self, step):
      restored = self.manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract_params)))
    finite.check_finite(finite.named_tensors(restored.params), f"{self.directory}/{step}")
    return restored.params

  def wait(self) -> None:
    with self._write_errors():
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the save in flight; Orbax's threads stop even when that save failed."""
    try:
      with self._write_errors():
        self.manager.wait_until_finished()
    finally:
      with contextlib.suppress(Exception):  # a failed write was raised just above
        self.manager.close()
