"""LoRA adapters in PEFT's directory format: `adapter_config.json` + `adapter_model.safetensors`,
which `peft.PeftModel.from_pretrained(base, path)` loads over the transformers base model.

PEFT's lora_A.weight is [rank, in] and lora_B.weight [out, rank]; ours are a [in, rank] and
b [rank, out] over the same flattened axes (HF's q_proj rows are heads-major, as our
[embed, heads, head_dim] kernel flattens, and o_proj's columns likewise), so the mapping is a
transpose and the scale alpha / rank is the same.
"""
import json
import math
import os

import jax
import numpy as np
from flax import nnx

from gram_jax import storage
from gram_jax.errors import GramError
from gram_jax.hf import safetensors_io
from gram_jax.models import families, finite, lora
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder, abstract_model

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
MODULES = {target: families.LAYER_MODULES[target] for target in families.PROJECTIONS}
_PREFIX = "base_model.model.model.layers."


def _name(layer: int, target: str, matrix: str) -> str:
  return f"{_PREFIX}{layer}.{MODULES[target]}.lora_{matrix}.weight"


def _projections(model_config: ModelConfig) -> dict[str, str]:
  modules = families.family(model_config.family).layer_modules
  return {target: modules[target] for target in families.PROJECTIONS}


def is_adapter_dir(path: str) -> bool:
  return storage.isfile(os.path.join(path, CONFIG))


def save_adapter(adapters: dict, spec: lora.Lora, out_dir: str, base_model: str = "") -> str:
  """Writes the adapters as a PEFT LoRA directory (float32 tensors)."""
  adapters = jax.device_get(adapters)
  entries = []
  for layer in sorted(adapters["layers"], key=int):
    for target in spec.targets:
      block, kernel, _ = lora.TARGETS[target]
      pair = adapters["layers"][layer][block][kernel]
      for matrix, value in (("A", pair["a"]), ("B", pair["b"])):
        value = np.asarray(value, np.float32).T
        entries.append((_name(int(layer), target, matrix), value.shape, np.float32,
                        lambda value=value: value))
  config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": spec.rank,
            "lora_alpha": spec.alpha, "lora_dropout": spec.dropout,
            "target_modules": sorted(MODULES[t].split(".")[1] for t in spec.targets),
            "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
            "modules_to_save": None, "base_model_name_or_path": base_model,
            "inference_mode": True}
  with storage.staged_dir(out_dir, CONFIG) as target:
    safetensors_io.write_file(os.path.join(target, WEIGHTS), entries)
    storage.write_atomic(os.path.join(target, CONFIG), json.dumps(config, indent=2) + "\n")
  return out_dir


# adapter_config.json fields whose other values change what the adapter computes
_REFUSED = {"use_dora": (False, None), "bias": ("none", None), "fan_in_fan_out": (False, None),
            "modules_to_save": (None, []), "rank_pattern": ({}, None),
            "alpha_pattern": ({}, None), "layer_replication": (None, [])}


def load_adapter(path: str, model_config: ModelConfig) -> tuple[dict, lora.Lora]:
  """A PEFT LoRA directory as our adapters and spec, for a model of `model_config`.

  The targets are the modules the file holds; layers it leaves out (`layers_to_transform`)
  get zero adapters, which change nothing. rsLoRA's scale alpha / sqrt(rank) is kept by
  the alpha it implies. What we cannot compute the same (DoRA, biases, extra modules,
  per-module ranks) is refused in one line naming the file and field."""
  config_path, weights_path = os.path.join(path, CONFIG), os.path.join(path, WEIGHTS)
  try:
    config = json.loads(storage.read_text(config_path))
  except (OSError, ValueError) as e:
    raise GramError(f"{config_path}: not a readable adapter config ({e})") from None
  if config.get("peft_type") != "LORA":
    raise GramError(f"{config_path}: peft_type {config.get('peft_type')!r}: only LORA "
                    "adapters can be imported")
  for field, accepted in _REFUSED.items():
    if config.get(field, accepted[0]) not in accepted:
      raise GramError(f"{config_path}: {field}={config[field]!r} is not supported (a plain "
                      f"LoRA needs {accepted[0]!r})")
  rank, alpha = config.get("r"), config.get("lora_alpha")
  if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
    raise GramError(f"{config_path}: r={rank!r} must be a positive integer")
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
      not 0 < alpha < float("inf"):
    raise GramError(f"{config_path}: lora_alpha={alpha!r} must be a finite positive number")
  alpha = float(alpha)
  if config.get("use_rslora"):
    alpha = alpha * math.sqrt(rank)  # so that alpha / rank = lora_alpha / sqrt(rank)
  if not storage.isfile(weights_path):
    raise GramError(f"{weights_path}: missing (only safetensors adapters are read)")
  header, start = safetensors_io.read_header(weights_path)
  names = {f"{_PREFIX}{layer}.{module}.lora_{m}.weight": (layer, target, m)
           for layer in range(model_config.num_layers)
           for target, module in _projections(model_config).items() for m in "AB"}
  unknown = sorted(set(header) - set(names))
  if unknown:
    raise GramError(f"{weights_path}: tensor {unknown[0]!r} is not a LoRA matrix of this "
                    f"model's projections ({len(unknown)} such tensors)")
  targets = tuple(t for t in lora.TARGETS if any(names[n][1] == t for n in header))
  if not targets:
    raise GramError(f"{weights_path}: holds no LoRA matrices")
  spec = lora.Lora(targets, rank, alpha, float(config.get("lora_dropout") or 0.0))
  kernels = nnx.to_pure_dict(abstract_model(model_config)[1])
  shapes = jax.eval_shape(lambda: lora.init_adapters(kernels, targets, rank, jax.random.key(0)))
  adapters = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), shapes)
  for name, entry in header.items():
    if entry["dtype"] not in safetensors_io.FLOAT_CODES:
      raise GramError(f"{weights_path}: tensor {name!r} has dtype {entry['dtype']}; LoRA "
                      "matrices need a float type")
    partner = name.replace(".lora_A.", ".lora_B.") if ".lora_A." in name else \
        name.replace(".lora_B.", ".lora_A.")
    if partner not in header:  # half a pair would merge as nothing, silently
      raise GramError(f"{weights_path}: holds {name!r} but not {partner!r}; each LoRA "
                      "module needs both matrices")
  for name, entry in header.items():
    layer, target, matrix = names[name]
    block, kernel, _ = lora.TARGETS[target]
    pair = adapters["layers"][layer][block][kernel]
    key = matrix.lower()
    value = safetensors_io.read_tensor(weights_path, entry, start, name).astype(np.float32).T
    if value.shape != pair[key].shape:
      raise GramError(f"{weights_path}: tensor {name!r} has shape {list(value.T.shape)}, this "
                      f"model and r={rank} need {list(pair[key].T.shape)}")
    finite.check_finite([(name, value)], weights_path)
    pair[key] = value
  return adapters, spec


def apply_adapter(model: Decoder, path: str) -> Decoder:
  """`model` with the PEFT adapter at `path` merged into its weights."""
  adapters, spec = load_adapter(path, model.config)
  graphdef, state = nnx.split(model)
  merged = lora.merge(nnx.to_pure_dict(state), adapters, spec)
  finite.check_finite(finite.named_tensors(merged), f"{path} merged into the model "
                      f"(scale lora_alpha / r = {spec.scale:g})")
  return nnx.merge(graphdef, merged)
