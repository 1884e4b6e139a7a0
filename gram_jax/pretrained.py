"""One entry point that loads a model from an HF directory, a gram_jax model checkpoint, or a
training run directory (its latest checkpoint)."""
import os
from typing import Any, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh

from gram_jax import checkpoint, parallel
from gram_jax.errors import GramError
from gram_jax.hf import config as hf_config
from gram_jax.hf import load as hf_load
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder

RUN_CHECKPOINTS = "checkpoints"


def is_run_dir(path: str) -> bool:
  return (os.path.isfile(os.path.join(path, checkpoint.MODEL_CONFIG)) and
          os.path.isdir(os.path.join(path, RUN_CHECKPOINTS)))


def read_model_config(path: str) -> ModelConfig:
  """The architecture stored at `path`, without reading any weights."""
  if not os.path.isdir(path):
    raise GramError(f"{path}: model directory not found")
  if checkpoint.is_model_checkpoint(path) or is_run_dir(path):
    return checkpoint.read_model_config(path)
  if hf_load.is_hf_dir(path):
    return hf_config.model_config_from_hf(hf_config.read_config_json(path),
                                          os.path.join(path, "config.json"))
  raise GramError(f"{path}: neither a Hugging Face model directory (config.json) nor a "
                  f"gram_jax checkpoint ({checkpoint.MODEL_CONFIG})")


def _load_run(path: str, cfg: ModelConfig, mesh: Mesh | None, rules: Sequence) -> Decoder:
  from gram_jax.run_checkpoint import RunCheckpointer
  checkpointer = RunCheckpointer(os.path.join(path, RUN_CHECKPOINTS), every_steps=1, keep=1)
  step = checkpointer.latest_step()
  if step is None:
    raise GramError(f"{path}/{RUN_CHECKPOINTS}: no complete checkpoint")
  graphdef, abstract_state = hf_load.abstract_model(cfg)
  params = checkpointer.restore_params(step, checkpoint.restore_target(abstract_state, mesh,
                                                                       rules))
  checkpointer.close()
  params = jax.tree.map(lambda x, t: x.astype(t.dtype), params,
                        nnx.to_pure_dict(abstract_state))
  return nnx.merge(graphdef, params)


def load_pretrained(path: str, dtype: str | None = None, mesh: Mesh | None = None,
                    compute_dtype: str | None = None,
                    rules: Sequence[tuple[str, Any]] = parallel.DEFAULT_RULES) -> Decoder:
  """Loads a Decoder from a Hugging Face directory, a gram_jax checkpoint or a run directory.

  dtype: parameter dtype (default: as stored). compute_dtype: activations (default: dtype).
  mesh: when given, every tensor goes straight onto its sharding.
  """
  if not os.path.isdir(path):
    raise GramError(f"{path}: model directory not found")
  if is_run_dir(path):
    cfg = checkpoint.read_model_config(path)
    cfg = cfg.replace(param_dtype=dtype or cfg.param_dtype,
                      dtype=compute_dtype or dtype or cfg.dtype)
    return _load_run(path, cfg, mesh, rules)
  if checkpoint.is_model_checkpoint(path):
    return checkpoint.load_model(path, dtype, mesh, compute_dtype, rules)
  if hf_load.is_hf_dir(path):
    return hf_load.load_hf(path, dtype, mesh, compute_dtype, rules)
  read_model_config(path)  # raises the explanatory error
  raise AssertionError("unreachable")
