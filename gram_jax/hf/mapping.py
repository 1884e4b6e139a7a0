"""The one table that pairs each gram_jax parameter with its transformers tensor.

Import and export both read this table, so a layout change is made in one place. Each entry
knows how to turn the HF tensor into our layout and back; both are exact reshapes/transposes.
"""
import dataclasses
from typing import Callable

import numpy as np

from gram_jax.models.config import ModelConfig

Transform = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  path: tuple[str | int, ...]  # path in the NNX state
  hf_name: str
  to_ours: Transform
  to_hf: Transform
  hf_shape: tuple[int, ...]


def _identity(x: np.ndarray) -> np.ndarray:
  return x


def _transpose(x: np.ndarray) -> np.ndarray:
  return x.T


def _in_proj(heads: int, head_dim: int, embed: int) -> tuple[Transform, Transform]:
  """HF [heads*head_dim, embed] <-> ours [embed, heads, head_dim]."""
  return (lambda w: w.reshape(heads, head_dim, embed).transpose(2, 0, 1),
          lambda w: w.transpose(1, 2, 0).reshape(heads * head_dim, embed))


def _out_proj(heads: int, head_dim: int, embed: int) -> tuple[Transform, Transform]:
  """HF [embed, heads*head_dim] <-> ours [heads, head_dim, embed]."""
  return (lambda w: w.reshape(embed, heads, head_dim).transpose(1, 2, 0),
          lambda w: w.transpose(2, 0, 1).reshape(embed, heads * head_dim))


def _bias(heads: int, head_dim: int) -> tuple[Transform, Transform]:
  return (lambda b: b.reshape(heads, head_dim), lambda b: b.reshape(heads * head_dim))


def param_specs(model_config: ModelConfig) -> list[ParamSpec]:
  """Every parameter of a Decoder with this config, in checkpoint order."""
  e, h, kv, d, m, v = (model_config.hidden_size, model_config.num_heads,
                       model_config.num_kv_heads, model_config.head_dim,
                       model_config.intermediate_size, model_config.vocab_size)
  specs = [ParamSpec(("embed",), "model.embed_tokens.weight", _identity, _identity, (v, e))]
  for i in range(model_config.num_layers):
    hf, ours = f"model.layers.{i}.", ("layers", i)
    attn = ours + ("attn",)
    q_in, kv_in, out = _in_proj(h, d, e), _in_proj(kv, d, e), _out_proj(h, d, e)
    specs += [
        ParamSpec(ours + ("input_norm", "scale"), hf + "input_layernorm.weight",
                  _identity, _identity, (e,)),
        ParamSpec(attn + ("q_kernel",), hf + "self_attn.q_proj.weight", *q_in, (h * d, e)),
        ParamSpec(attn + ("k_kernel",), hf + "self_attn.k_proj.weight", *kv_in, (kv * d, e)),
        ParamSpec(attn + ("v_kernel",), hf + "self_attn.v_proj.weight", *kv_in, (kv * d, e)),
        ParamSpec(attn + ("o_kernel",), hf + "self_attn.o_proj.weight", *out, (e, h * d)),
    ]
    if model_config.qkv_bias:
      specs += [
          ParamSpec(attn + ("q_bias",), hf + "self_attn.q_proj.bias", *_bias(h, d), (h * d,)),
          ParamSpec(attn + ("k_bias",), hf + "self_attn.k_proj.bias", *_bias(kv, d), (kv * d,)),
          ParamSpec(attn + ("v_bias",), hf + "self_attn.v_proj.bias", *_bias(kv, d), (kv * d,)),
      ]
    if model_config.qk_norm:
      specs += [
          ParamSpec(attn + ("q_norm", "scale"), hf + "self_attn.q_norm.weight",
                    _identity, _identity, (d,)),
          ParamSpec(attn + ("k_norm", "scale"), hf + "self_attn.k_norm.weight",
                    _identity, _identity, (d,)),
      ]
    specs += [
        ParamSpec(ours + ("post_attn_norm", "scale"), hf + "post_attention_layernorm.weight",
                  _identity, _identity, (e,)),
        ParamSpec(ours + ("mlp", "gate_kernel"), hf + "mlp.gate_proj.weight",
                  _transpose, _transpose, (m, e)),
        ParamSpec(ours + ("mlp", "up_kernel"), hf + "mlp.up_proj.weight",
                  _transpose, _transpose, (m, e)),
        ParamSpec(ours + ("mlp", "down_kernel"), hf + "mlp.down_proj.weight",
                  _transpose, _transpose, (e, m)),
    ]
  specs.append(ParamSpec(("final_norm", "scale"), "model.norm.weight", _identity, _identity, (e,)))
  if not model_config.tie_word_embeddings:
    specs.append(ParamSpec(("lm_head",), "lm_head.weight", _transpose, _transpose, (v, e)))
  return specs


# Tensors some checkpoints carry that the model does not need.
IGNORED_HF_TENSORS = ("rotary_emb.inv_freq",)
