"""gram_jax model checkpoints: Orbax params + model_config.json + tokenizer files.

A model checkpoint is a directory:
  params/              Orbax checkpoint of the parameter tree
  model_config.json    ModelConfig fields
  tokenizer/           tokenizer files (optional)
Training checkpoints (train_state.py) hold one of these per step plus optimizer state.
"""
import json
import os
import shutil
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh

from gram_jax import parallel
from gram_jax.errors import GramError
from gram_jax.hf import load as hf_load
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder

MODEL_CONFIG = "model_config.json"
PARAMS = "params"
TOKENIZER = "tokenizer"


def is_model_checkpoint(path: str) -> bool:
  return (os.path.isfile(os.path.join(path, MODEL_CONFIG)) and
          os.path.isdir(os.path.join(path, PARAMS)))


def read_model_config(path: str) -> ModelConfig:
  config_path = os.path.join(path, MODEL_CONFIG)
  try:
    with open(config_path, encoding="utf-8") as f:
      return ModelConfig.from_dict(json.load(f))
  except (OSError, json.JSONDecodeError, ValueError, TypeError) as e:
    raise GramError(f"{config_path}: cannot read model config ({e})") from None


def save_model(model: Decoder, path: str, tokenizer: Any = None) -> str:
  """Writes a self-contained model checkpoint; the directory appears only when complete."""
  path = os.path.abspath(path)
  if os.path.isdir(path) and os.listdir(path) and not is_model_checkpoint(path):
    raise GramError(f"{path}: exists and is not a gram_jax checkpoint; refusing to replace it")
  tmp = path.rstrip("/") + ".tmp"
  if jax.process_index() == 0:
    shutil.rmtree(tmp, ignore_errors=True)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(tmp, PARAMS), params)
    checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    with open(os.path.join(tmp, MODEL_CONFIG), "w") as f:
      json.dump(model.cfg.to_dict(), f, indent=2)
    if tokenizer is not None:
      tokenizer.save_pretrained(os.path.join(tmp, TOKENIZER))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
  return path


def restore_target(abstract_state: nnx.State, mesh: Mesh | None,
                   rules: Sequence = parallel.DEFAULT_RULES) -> dict[Any, Any]:
  """A nested dict of ShapeDtypeStructs carrying the wanted shardings, for Orbax restore."""
  return jax.tree.map(lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
                      nnx.to_pure_dict(abstract_state),
                      parallel.param_shardings(abstract_state, mesh, rules))


def load_model(path: str, dtype: str | None = None, mesh: Mesh | None = None,
               compute_dtype: str | None = None,
               rules: Sequence = parallel.DEFAULT_RULES) -> Decoder:
  """Restores a model checkpoint directly onto its shardings (any mesh)."""
  cfg = read_model_config(path)
  if dtype:
    cfg = cfg.replace(param_dtype=dtype, dtype=compute_dtype or dtype)
  elif compute_dtype:
    cfg = cfg.replace(dtype=compute_dtype)
  graphdef, abstract_state = hf_load.abstract_model(cfg)
  target = restore_target(abstract_state, mesh, rules)
  with ocp.StandardCheckpointer() as checkpointer:
    try:
      restored = checkpointer.restore(os.path.join(os.path.abspath(path), PARAMS), target)
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise GramError(f"{path}: checkpoint does not match {MODEL_CONFIG} ({e})") from None
  nnx.replace_by_pure_dict(abstract_state, restored)
  return nnx.merge(graphdef, abstract_state)
