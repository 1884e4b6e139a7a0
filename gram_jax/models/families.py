"""Model families as data: each Hugging Face decoder family gram_jax reads, as one record.

A record says what the family is in gram_jax's terms: its config.json `model_type` and
architecture, the decoder features it switches on (ModelConfig fields), the config.json
values it refuses (what gram_jax does not implement), how its own config.json fields map to
ModelConfig and back, the name of each layer module in its checkpoints (read by import,
export, PEFT and LoRA alike) and whether its chat template has a system turn.

Adding a family is a record here, the decoder features it needs (models/decoder.py) and a
test fixture: docs/extending.md.
"""
import dataclasses
from typing import Any, Callable

# A layer's modules, gram_jax's name -> the HF module under `model.layers.{i}.`: the names
# every family here shares. The seven projections are also the LoRA targets (PEFT names an
# adapter by its HF module; a family that renames them needs its record's names passed to
# `hf.peft.save_adapter`, which today writes these).
LAYER_MODULES = {
    "input_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
    "o": "self_attn.o_proj", "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
    "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class Refusal:
  """A config.json field whose value gram_jax does not implement unless it is `supported`
  (a missing field reads as `default`)."""
  field: str
  supported: tuple
  default: Any = None

  def check(self, raw: dict[str, Any]) -> str | None:
    value = raw.get(self.field, self.default)
    if value in self.supported:
      return None
    shown = ", ".join("null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                      for v in self.supported)
    return f"unsupported value for '{self.field}': {value!r} (supported: {shown})"


@dataclasses.dataclass(frozen=True)
class Family:
  name: str  # config.json's model_type, and ModelConfig.family
  architecture: str  # config.json's architectures[0] (transformers' class)
  features: dict[str, Any]  # ModelConfig fields every model of the family has
  refusals: tuple[Refusal, ...]
  # config.json -> the family's own ModelConfig fields (beyond those every family shares)
  read: Callable[[dict[str, Any], str], dict[str, Any]] = lambda raw, source: {}
  # ModelConfig -> the family's own config.json fields
  write: Callable[[Any], dict[str, Any]] = lambda config: {}
  layer_modules: dict[str, str] = dataclasses.field(
      default_factory=lambda: dict(LAYER_MODULES))
  system_turn: bool = True  # the chat template renders a system message


_SILU_DECODER = (Refusal("hidden_act", ("silu",), "silu"), Refusal("mlp_bias", (False,), False),
                 Refusal("use_sliding_window", (False,), False),
                 Refusal("pretraining_tp", (1,), 1))
_NO_O_BIAS = Refusal("attention_bias", (False,), False)  # o_proj bias is not implemented


def _gemma3_read(raw: dict[str, Any], source: str) -> dict[str, Any]:
  window = raw.get("sliding_window") or 0
  types = raw.get("layer_types")
  if types is None:  # older configs: every `sliding_window_pattern`-th layer is global
    pattern = int(raw.get("sliding_window_pattern", 6))
    types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
             for i in range(int(raw["num_hidden_layers"]))]
  names = {"full_attention": "full", "sliding_attention": "sliding"}
  unknown = sorted(set(types) - set(names))
  if unknown:
    raise ValueError(f"layer_types: {unknown[0]!r} is not full_attention or sliding_attention")
  return dict(query_pre_attn_scalar=float(raw.get("query_pre_attn_scalar", 256)),
              sliding_window=int(window), layer_types=tuple(names[t] for t in types))


def _number(value: float) -> int | float:
  """An integral float as the int config.json holds (transformers' strict configs check)."""
  return int(value) if float(value).is_integer() else value


def _gemma3_write(config: Any) -> dict[str, Any]:
  names = {"full": "full_attention", "sliding": "sliding_attention"}
  return dict(hidden_activation="gelu_pytorch_tanh",
              query_pre_attn_scalar=_number(config.query_pre_attn_scalar),
              sliding_window=config.sliding_window,
              layer_types=[names[t] for t in config.layer_types], attention_bias=False,
              final_logit_softcapping=None, attn_logit_softcapping=None)


RECORDS = {family.name: family for family in (
    Family("llama", "LlamaForCausalLM", dict(qkv_bias=False, qk_norm=False),
           _SILU_DECODER + (_NO_O_BIAS,),
           write=lambda config: dict(hidden_act="silu", attention_bias=False, mlp_bias=False)),
    Family("qwen2", "Qwen2ForCausalLM", dict(qkv_bias=True, qk_norm=False), _SILU_DECODER,
           write=lambda config: dict(hidden_act="silu")),
    Family("qwen3", "Qwen3ForCausalLM", dict(qkv_bias=False, qk_norm=True),
           _SILU_DECODER + (_NO_O_BIAS,),
           write=lambda config: dict(hidden_act="silu", attention_bias=False)),
    Family("gemma3_text", "Gemma3ForCausalLM",
           dict(qkv_bias=False, qk_norm=True, norm_weight_offset=1.0, sandwich_norms=True,
                embed_scale=True, mlp_activation="gelu_tanh"),
           (Refusal("hidden_activation", ("gelu_pytorch_tanh",), "gelu_pytorch_tanh"),
            _NO_O_BIAS, Refusal("final_logit_softcapping", (None,)),
            Refusal("attn_logit_softcapping", (None,)),
            Refusal("use_bidirectional_attention", (False, None), False)),
           read=_gemma3_read, write=_gemma3_write,
           layer_modules={**LAYER_MODULES, "post_attn_norm": "pre_feedforward_layernorm",
                          "attn_out_norm": "post_attention_layernorm",
                          "mlp_out_norm": "post_feedforward_layernorm"},
           system_turn=False),
)}


def family(name: str) -> Family:
  if name not in RECORDS:
    raise ValueError(f"family must be one of {tuple(RECORDS)}, got {name!r}")
  return RECORDS[name]
