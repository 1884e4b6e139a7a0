"""config.json <-> ModelConfig, with errors that name the unsupported field."""
import json
import os
from typing import Any

from gram_jax import storage
from gram_jax.errors import GramError
from gram_jax.models import families
from gram_jax.models.config import ModelConfig

_HF_NAMES = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
             "num_kv_heads": "num_key_value_heads"}  # ModelConfig's name -> config.json's
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def read_config_json(model_dir: str) -> dict[str, Any]:
  path = os.path.join(model_dir, "config.json")
  if not storage.isfile(path):
    raise GramError(f"{path}: not found; a Hugging Face model directory needs config.json")
  try:
    return json.loads(storage.read_text(path))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise GramError(f"{path}: not valid JSON ({e})") from None


def _require(raw: dict[str, Any], key: str, source: str) -> Any:
  if key not in raw or raw[key] is None:
    raise GramError(f"{source}: missing field '{key}'")
  return raw[key]


def _rope_fields(raw: dict[str, Any], source: str) -> dict[str, Any]:
  """Reads rope settings from transformers v5 `rope_parameters` or legacy rope_theta/rope_scaling;
  a family with local layers (Gemma 3) keeps one set per layer type, and its local layers'
  base (`rope_local_base_freq` before v5)."""
  params = dict(raw.get("rope_parameters") or {})
  legacy_scaling = raw.get("rope_scaling") or {}
  field = "rope_parameters" if "rope_parameters" in raw else "rope_scaling"
  if "full_attention" in params or "sliding_attention" in params:
    local = dict(params.get("sliding_attention") or {})
    if local.get("rope_type", "default") != "default":
      raise GramError(f"{source}: unsupported value for 'rope_parameters.sliding_attention."
                      f"rope_type': {local['rope_type']!r} (supported: default)")
    fields = _rope_fields({"rope_parameters": params.get("full_attention") or {}}, source)
    return {**fields, "rope_local_theta": float(local.get("rope_theta", 10000.0))}
  if "rope_local_base_freq" in raw:
    rest = {k: v for k, v in raw.items() if k != "rope_local_base_freq"}
    return {**_rope_fields(rest, source), "rope_local_theta": float(raw["rope_local_base_freq"])}
  params = {**legacy_scaling, **params}
  theta = params.get("rope_theta", raw.get("rope_theta", 10000.0))
  rope_type = params.get("rope_type", params.get("type", "default"))
  fields = dict(rope_theta=float(theta), rope_type=rope_type)
  if rope_type == "default":
    return fields
  if rope_type == "linear":
    return {**fields, "rope_factor": float(_require(params, "factor", f"{source} {field}"))}
  if rope_type == "llama3":
    where = f"{source} {field}"
    return {**fields,
            "rope_factor": float(_require(params, "factor", where)),
            "rope_low_freq_factor": float(_require(params, "low_freq_factor", where)),
            "rope_high_freq_factor": float(_require(params, "high_freq_factor", where)),
            "rope_original_max_position": int(
                _require(params, "original_max_position_embeddings", where))}
  raise GramError(f"{source}: unsupported value for '{field}.rope_type': {rope_type!r} "
                  "(supported: default, linear, llama3)")


def model_config_from_hf(raw: dict[str, Any], source: str = "config.json",
                         param_dtype: str | None = None) -> ModelConfig:
  """Maps a transformers config.json dict to ModelConfig (its family's record says how)."""
  name = raw.get("model_type")
  if name not in families.RECORDS:
    raise GramError(f"{source}: unsupported value for 'model_type': {name!r} "
                    f"(supported: {', '.join(families.RECORDS)})")
  family = families.RECORDS[name]
  for refusal in family.refusals:
    if problem := refusal.check(raw):
      raise GramError(f"{source}: {problem}")
  try:  # a field of the wrong kind or range is one line naming the file
    heads = int(_require(raw, "num_attention_heads", source))
    hidden = int(_require(raw, "hidden_size", source))
    stored_dtype = raw.get("dtype") or raw.get("torch_dtype") or "float32"
    dtype = param_dtype or _DTYPES.get(stored_dtype, "float32")
    eos = raw.get("eos_token_id")
    return ModelConfig(
        family=name,
        vocab_size=int(_require(raw, "vocab_size", source)),
        hidden_size=hidden,
        intermediate_size=int(_require(raw, "intermediate_size", source)),
        num_layers=int(_require(raw, "num_hidden_layers", source)),
        num_heads=heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        **family.features,
        **family.read(raw, source),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=raw.get("pad_token_id"),
        param_dtype=dtype,
        dtype=dtype,
        **_rope_fields(raw, source),
    )
  except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
    field, _, rest = str(e).partition(" ")
    raise GramError(f"{source}: {_HF_NAMES.get(field, field)} {rest}") from None


def legacy_rope_fields(model_config: ModelConfig) -> dict[str, Any]:
  """The rope settings as transformers 4.x reads them: rope_theta and rope_scaling."""
  scaling = None
  if model_config.rope_type == "linear":
    scaling = {"rope_type": "linear", "factor": model_config.rope_factor}
  elif model_config.rope_type == "llama3":
    scaling = {"rope_type": "llama3", "factor": model_config.rope_factor,
               "low_freq_factor": model_config.rope_low_freq_factor,
               "high_freq_factor": model_config.rope_high_freq_factor,
               "original_max_position_embeddings": model_config.rope_original_max_position}
  return {"rope_theta": model_config.rope_theta, "rope_scaling": scaling}


def hf_config_dict(model_config: ModelConfig) -> dict[str, Any]:
  """The config.json fields transformers needs to rebuild this architecture."""
  rope: dict[str, Any] = {"rope_type": model_config.rope_type,
                          "rope_theta": model_config.rope_theta}
  if model_config.rope_type in ("linear", "llama3"):
    rope["factor"] = model_config.rope_factor
  if model_config.rope_type == "llama3":
    rope.update(low_freq_factor=model_config.rope_low_freq_factor,
                high_freq_factor=model_config.rope_high_freq_factor,
                original_max_position_embeddings=model_config.rope_original_max_position)
  eos = model_config.eos_token_id
  eos = list(eos) if isinstance(eos, tuple) else eos
  family = families.family(model_config.family)
  if model_config.layer_types:  # one RoPE per layer type
    names = {"full": "full_attention", "sliding": "sliding_attention"}
    rope = {names["full"]: rope, names["sliding"]: {"rope_type": "default",
                                                    "rope_theta": model_config.rope_local_theta}}
  values = dict(
      architectures=[family.architecture], model_type=model_config.family,
      vocab_size=model_config.vocab_size, hidden_size=model_config.hidden_size,
      intermediate_size=model_config.intermediate_size, num_hidden_layers=model_config.num_layers,
      num_attention_heads=model_config.num_heads, num_key_value_heads=model_config.num_kv_heads,
      head_dim=model_config.head_dim, rms_norm_eps=model_config.rms_norm_eps,
      max_position_embeddings=model_config.max_position_embeddings,
      tie_word_embeddings=model_config.tie_word_embeddings, rope_parameters=rope,
      bos_token_id=model_config.bos_token_id, eos_token_id=eos,
      pad_token_id=model_config.pad_token_id, dtype=model_config.param_dtype)
  return {**values, **family.write(model_config)}
