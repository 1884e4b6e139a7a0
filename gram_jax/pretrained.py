"""One entry point that loads a model (and its tokenizer) from an HF directory, a gram_jax
model checkpoint, or a training run directory (its latest checkpoint)."""
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

from jax.sharding import Mesh

from gram_jax import checkpoint, parallel, storage
from gram_jax.errors import GramError
from gram_jax.hf import config as hf_config
from gram_jax.hf import load as hf_load
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder
from gram_jax.text import tokenizer as tok


def read_model_config(path: str) -> ModelConfig:
  """The architecture stored at `path`, without reading any weights."""
  if not storage.isdir(path):
    raise GramError(f"{path}: model directory not found")
  if checkpoint.is_model_checkpoint(path) or checkpoint.is_run_dir(path):
    return checkpoint.read_saved_model_config(path)
  if hf_load.is_hf_dir(path):
    return hf_config.model_config_from_hf(hf_config.read_config_json(path),
                                          os.path.join(path, "config.json"))
  raise GramError(f"{path}: neither a Hugging Face model directory (config.json) nor a "
                  f"gram_jax checkpoint ({checkpoint.MODEL_CONFIG})")


def load_pretrained(path: str, dtype: str | None = None, mesh: Mesh | None = None,
                    compute_dtype: str | None = None,
                    rules: Sequence[tuple[str, Any]] = parallel.DEFAULT_RULES,
                    attention: Mapping[str, Any] | None = None) -> Decoder:
  """Loads a Decoder from a Hugging Face directory, a gram_jax checkpoint or a run directory.

  dtype: parameter dtype (default: as stored). compute_dtype: activations (default: dtype).
  attention: the attention kernel and block sizes to run with (default: as saved).
  mesh: when given, every tensor goes straight onto its sharding. `path` may be local or
  gs:// / s3://: safetensors are read tensor by tensor with ranged reads, Orbax checkpoints
  through TensorStore, so no full local copy is made.
  """
  if not storage.isdir(path):
    raise GramError(f"{path}: model directory not found")
  storage.check_contained(path)
  if checkpoint.is_run_dir(path):
    return checkpoint.load_run_model(path, dtype, mesh, compute_dtype, rules, attention)
  if checkpoint.is_model_checkpoint(path):
    return checkpoint.load_model(path, dtype, mesh, compute_dtype, rules, attention)
  if hf_load.is_hf_dir(path):
    return hf_load.load_hf(path, dtype, mesh, compute_dtype, rules, attention)
  read_model_config(path)  # raises the explanatory error
  raise AssertionError("unreachable")


def weights_version(path: str) -> str:
  """A token that changes when the weights at `path` are replaced (the sizes and modification
  times, or object generations, of the files they are read from), so work finished on other
  weights under the same path is never reused for these."""
  if checkpoint.is_run_dir(path) or checkpoint.is_model_checkpoint(path):
    kept = (checkpoint.PARAMS, checkpoint.RUN_CHECKPOINTS, checkpoint.MERGED)
    files = [os.path.join(path, checkpoint.MODEL_CONFIG)] + [
        f for name in kept if storage.isdir(os.path.join(path, name))
        for f in storage.walk_files(os.path.join(path, name))]
  else:
    files = [os.path.join(path, name) for name in storage.listdir(path)
             if name.endswith((".safetensors", ".json"))]
  versions = [(os.path.relpath(f, path), *storage.version(f)) for f in sorted(files)]
  return hashlib.sha256(json.dumps(versions).encode()).hexdigest()[:16]


def load_tokenizer(path: str) -> Any:
  """The tokenizer beside a model: an HF directory's own, a checkpoint's or run's tokenizer/."""
  files = checkpoint.tokenizer_dir(path)
  storage.check_contained(files)
  return tok.load_tokenizer(storage.local_copy(files))
