"""One entry point that loads a model from an HF directory or a gram_jax checkpoint."""
import os
from typing import Any, Sequence

from jax.sharding import Mesh

from gram_jax import checkpoint, parallel
from gram_jax.errors import GramError
from gram_jax.hf import load as hf_load
from gram_jax.models.decoder import Decoder


def load_pretrained(path: str, dtype: str | None = None, mesh: Mesh | None = None,
                    compute_dtype: str | None = None,
                    rules: Sequence[tuple[str, Any]] = parallel.DEFAULT_RULES) -> Decoder:
  """Loads a Decoder from a Hugging Face directory or a gram_jax model checkpoint.

  dtype: parameter dtype (default: as stored). compute_dtype: activations (default: dtype).
  mesh: when given, every tensor goes straight onto its sharding.
  """
  if not os.path.isdir(path):
    raise GramError(f"{path}: model directory not found")
  if checkpoint.is_model_checkpoint(path):
    return checkpoint.load_model(path, dtype, mesh, compute_dtype, rules)
  if hf_load.is_hf_dir(path):
    return hf_load.load_hf(path, dtype, mesh, compute_dtype, rules)
  raise GramError(f"{path}: neither a Hugging Face model directory (config.json) nor a "
                  f"gram_jax checkpoint ({checkpoint.MODEL_CONFIG})")
