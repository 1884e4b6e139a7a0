"""Export a gram_jax Decoder as a Hugging Face directory transformers loads as-is."""
import contextlib
import json
import os
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from gram_jax import storage
from gram_jax.errors import GramError
from gram_jax.hf import mapping, safetensors_io
from gram_jax.hf import config as hf_config
from gram_jax.models.decoder import Decoder

_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size: int | str) -> int:
  """'5GB' / '500MiB' / 1000 -> bytes."""
  if isinstance(size, int):
    return size
  text = size.strip().upper()
  for unit, factor in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
    if text.endswith(unit):
      return int(float(text[:-len(unit)]) * factor)
  return int(text)


def _host_array(value: jax.Array) -> np.ndarray:
  """The full value on this host, gathering shards from other processes when needed."""
  if not value.is_fully_addressable:
    value = multihost_utils.process_allgather(value, tiled=True)
  return np.asarray(jax.device_get(value))


def _plan_shards(specs: list[mapping.ParamSpec], dtypes: dict[str, np.dtype],
                 max_bytes: int) -> list[list[mapping.ParamSpec]]:
  shards: list[list[mapping.ParamSpec]] = [[]]
  used = 0
  for spec in specs:
    nbytes = int(np.prod(spec.hf_shape)) * dtypes[spec.hf_name].itemsize
    if shards[-1] and used + nbytes > max_bytes:
      shards.append([])
      used = 0
    shards[-1].append(spec)
    used += nbytes
  return shards


# What transformers 5.x writes that 4.x cannot read (RLHF stacks often pin 4.x).
LEGACY_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def _update_json(path: str, update) -> None:
  with open(path) as f:
    values = json.load(f)
  update(values)
  with open(path, "w") as f:
    json.dump(values, f, indent=2, sort_keys=True)
    f.write("\n")


def write_config_files(model_config, out_dir: str) -> None:
  """config.json through transformers' own config class, plus generation_config.json.

  transformers 5.x writes the rope settings only as `rope_parameters`; 4.x reads
  `rope_theta` and `rope_scaling` and silently falls back to theta 10,000 and no scaling
  without them, so both spellings are written (5.x reads `rope_parameters` first)."""
  import transformers
  values = hf_config.hf_config_dict(model_config)
  hf_cfg = transformers.AutoConfig.for_model(**values)
  hf_cfg.save_pretrained(out_dir)
  _update_json(os.path.join(out_dir, "config.json"),
               lambda config: config.update(hf_config.legacy_rope_fields(model_config)))
  generation = dict(bos_token_id=model_config.bos_token_id, eos_token_id=values["eos_token_id"],
                    pad_token_id=model_config.pad_token_id)
  generation = {k: v for k, v in generation.items() if v is not None}
  transformers.GenerationConfig(**generation).save_pretrained(out_dir)


def save_tokenizer_files(tokenizer: Any, out_dir: str) -> None:
  """The tokenizer files in a form transformers 4.x reads as well as 5.x: a tokenizer class
  4.x knows, and extra special tokens as `additional_special_tokens` (5.x writes them as an
  `extra_special_tokens` list, which 4.x takes for a dict and fails on; 5.x still reads the
  4.x name). Real Llama and Qwen tokenizers have such tokens."""
  tokenizer.save_pretrained(out_dir)
  def both_majors(config: dict) -> None:
    name = config.get("tokenizer_class")
    config["tokenizer_class"] = LEGACY_TOKENIZER_CLASSES.get(name, name)
    if isinstance(config.get("extra_special_tokens"), list):
      config["additional_special_tokens"] = config.pop("extra_special_tokens")
  _update_json(os.path.join(out_dir, "tokenizer_config.json"), both_majors)


def save_pretrained(model: Decoder, out_dir: str, tokenizer: Any = None,
                    max_shard_size: int | str = "5GB") -> str:
  """Writes config, generation config, sharded safetensors (+ index) and tokenizer files.

  An interrupted export never leaves a directory that looks complete: locally it is written
  aside and renamed into place; on object storage it is written in place with config.json,
  what makes it a model directory, uploaded last. Only process 0 writes.
  """
  if storage.isdir(out_dir) and storage.listdir(out_dir) and not storage.isfile(
      os.path.join(out_dir, "config.json")):
    raise GramError(f"{out_dir}: exists and is not a model export; refusing to replace it")
  model_config = model.config
  state = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  specs = mapping.param_specs(model_config)
  dtypes = {s.hf_name: np.dtype(state[s.path].dtype) for s in specs}
  shards = _plan_shards(specs, dtypes, parse_size(max_shard_size))
  is_writer = jax.process_index() == 0
  staged = storage.staged_dir(out_dir, "config.json") if is_writer else contextlib.nullcontext()
  with staged as target:
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
      name = ("model.safetensors" if len(shards) == 1
              else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
      entries = []
      for spec in shard:
        produce = (lambda s=spec: s.to_hf(_host_array(state[s.path][...])))
        entries.append((spec.hf_name, spec.hf_shape, dtypes[spec.hf_name], produce))
        weight_map[spec.hf_name] = name
        total += int(np.prod(spec.hf_shape)) * dtypes[spec.hf_name].itemsize
      if is_writer:
        safetensors_io.write_file(os.path.join(target, name), entries)
      else:  # every process must take part in the gathers
        for entry in entries:
          entry[3]()
    if is_writer:
      with storage.local_mirror(target, last=("config.json",)) as local:
        if len(shards) > 1:
          with open(os.path.join(local, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                      indent=2)
        if tokenizer is not None:
          save_tokenizer_files(tokenizer, local)
        write_config_files(model_config, local)
  return out_dir
