"""Import a Hugging Face checkpoint directory into a sharded gram_jax Decoder."""
import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from gram_jax import parallel, storage
from gram_jax.errors import GramError
from gram_jax.hf import mapping, safetensors_io
from gram_jax.hf import config as hf_config
from gram_jax.models import finite
from gram_jax.models.config import as_run
from gram_jax.models.decoder import Decoder, abstract_model


def is_hf_dir(path: str) -> bool:
  return storage.isfile(os.path.join(path, "config.json"))


def tensor_index(model_dir: str) -> dict[str, tuple[str, dict[str, Any], int]]:
  """Maps every tensor name to (file, header entry, data offset) over single or sharded files."""
  index_path = os.path.join(model_dir, "model.safetensors.index.json")
  if storage.isfile(index_path):
    try:
      weight_map = json.loads(storage.read_text(index_path))["weight_map"]
      files = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
      raise GramError(f"{index_path}: not a safetensors index ({type(e).__name__}: {e}); it "
                      "needs a weight_map of tensor name -> file name") from None
    if not all(isinstance(name, str) for name in files):
      raise GramError(f"{index_path}: weight_map values must be file names")
  elif storage.isfile(os.path.join(model_dir, "model.safetensors")):
    files = ["model.safetensors"]
  else:
    found = storage.listdir(model_dir)
    raise GramError(f"{model_dir}: no model.safetensors or model.safetensors.index.json "
                    f"(found {found}); only safetensors weights are loaded, never pickles")
  index = {}
  for name in files:
    path = storage.contained(model_dir, name)
    if not storage.isfile(path):
      raise GramError(f"{index_path}: lists {name}, which is missing")
    header, data_start = safetensors_io.read_header(path)
    for tensor_name, entry in header.items():
      index[tensor_name] = (path, entry, data_start)
  return index


def place(array_fn: Callable[[], np.ndarray], variable: nnx.Variable, mesh: Mesh | None,
          rules: Sequence) -> jax.Array:
  """Puts one host tensor onto its sharding; each process copies only its own shards."""
  sharding = parallel.variable_sharding(variable, mesh, rules)
  host = array_fn().astype(variable.dtype, copy=False)
  if mesh is None:
    return jax.device_put(host, sharding)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def assemble(graphdef: nnx.GraphDef, abstract_state: nnx.State,
             values: dict[tuple, jax.Array]) -> nnx.Module:
  """Merges loaded arrays into the abstract state and returns the live module."""
  flat = [(path, var.replace(value=values[path])) for path, var in nnx.to_flat_state(
      abstract_state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def load_hf(model_dir: str, dtype: str | None = None, mesh: Mesh | None = None,
            compute_dtype: str | None = None,
            rules: Sequence = parallel.DEFAULT_RULES,
            attention: Mapping[str, Any] | None = None) -> Decoder:
  """Reads config.json and safetensors from `model_dir`, one tensor at a time."""
  raw = hf_config.read_config_json(model_dir)
  model_config = as_run(hf_config.model_config_from_hf(
      raw, os.path.join(model_dir, "config.json"), dtype), compute_dtype=compute_dtype,
                        attention=attention)
  index = tensor_index(model_dir)
  specs = mapping.param_specs(model_config)
  for spec in specs:  # every tensor there, of its shape and a float type, before building
    if spec.hf_name not in index:
      raise GramError(f"{model_dir}: tensor '{spec.hf_name}' is missing from the safetensors "
                      "files")
    path, entry, _ = index[spec.hf_name]
    if tuple(entry["shape"]) != spec.hf_shape:
      raise GramError(f"{path}: tensor '{spec.hf_name}' has shape {tuple(entry['shape'])}, "
                      f"config.json implies {spec.hf_shape}")
    if entry["dtype"] not in safetensors_io.FLOAT_CODES:
      raise GramError(f"{path}: tensor '{spec.hf_name}' has dtype {entry['dtype']}; a weight "
                      f"needs a float type ({', '.join(safetensors_io.FLOAT_CODES)})")
  graphdef, abstract_state = abstract_model(model_config)
  variables = dict(nnx.to_flat_state(abstract_state))
  values = {}
  for spec in specs:
    path, entry, data_start = index[spec.hf_name]
    read = lambda: spec.to_ours(safetensors_io.read_tensor(path, entry, data_start,
                                                            spec.hf_name))
    values[spec.path] = place(read, variables[spec.path], mesh, rules)
  finite.check_finite([(spec.hf_name, values[spec.path]) for spec in specs], model_dir)
  return assemble(graphdef, abstract_state, values)
