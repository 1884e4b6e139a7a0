"""The one table that pairs each gram_jax parameter with its transformers tensor.

Import and export both read this table, so a layout change is made in one place. Each entry
knows how to turn the HF tensor into our layout and back; both are exact reshapes/transposes.
"""
import dataclasses
from typing import Callable

import numpy as np

from gram_jax.models import families
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
  """Every parameter of a Decoder with this config, in checkpoint order; each layer module's
  HF name is its family's (models/families.py)."""
  e, h, kv, d, m, v = (model_config.hidden_size, model_config.num_heads,
                       model_config.num_kv_heads, model_config.head_dim,
                       model_config.intermediate_size, model_config.vocab_size)
  modules = families.family(model_config.family).layer_modules
  specs = [ParamSpec(("embed",), "model.embed_tokens.weight", _identity, _identity, (v, e))]
  for i in range(model_config.num_layers):
    hf, ours = f"model.layers.{i}.", ("layers", i)
    attn, mlp = ours + ("attn",), ours + ("mlp",)
    q_in, kv_in, out = _in_proj(h, d, e), _in_proj(kv, d, e), _out_proj(h, d, e)

    def norm(name: str, size: int = e, within: tuple = ours) -> ParamSpec:
      return ParamSpec(within + (name, "scale"), f"{hf}{modules[name]}.weight", _identity,
                       _identity, (size,))

    def weight(name: str, within: tuple, transforms: tuple, shape: tuple) -> ParamSpec:
      return ParamSpec(within + (f"{name}_kernel",), f"{hf}{modules[name]}.weight",
                       *transforms, shape)

    specs += [norm("input_norm"),
              weight("q", attn, q_in, (h * d, e)), weight("k", attn, kv_in, (kv * d, e)),
              weight("v", attn, kv_in, (kv * d, e)), weight("o", attn, out, (e, h * d))]
    if model_config.qkv_bias:
      specs += [ParamSpec(attn + (f"{name}_bias",), f"{hf}{modules[name]}.bias",
                          *_bias(heads, d), (heads * d,))
                for name, heads in (("q", h), ("k", kv), ("v", kv))]
    if model_config.qk_norm:
      specs += [norm("q_norm", d, attn), norm("k_norm", d, attn)]
    if model_config.sandwich_norms:
      specs.append(norm("attn_out_norm"))
    specs += [norm("post_attn_norm"),
              weight("gate", mlp, (_transpose, _transpose), (m, e)),
              weight("up", mlp, (_transpose, _transpose), (m, e)),
              weight("down", mlp, (_transpose, _transpose), (e, m))]
    if model_config.sandwich_norms:
      specs.append(norm("mlp_out_norm"))
  specs.append(ParamSpec(("final_norm", "scale"), "model.norm.weight", _identity, _identity, (e,)))
  if not model_config.tie_word_embeddings:
    specs.append(ParamSpec(("lm_head",), "lm_head.weight", _transpose, _transpose, (v, e)))
  return specs


# Tensors some checkpoints carry that the model does not need.
IGNORED_HF_TENSORS = ("rotary_emb.inv_freq",)
