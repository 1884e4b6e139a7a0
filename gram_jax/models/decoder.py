"""Flax NNX decoder for the Llama, Qwen2 and Qwen3 families.

Kernels are stored in the layout the einsums want ([embed, heads, head_dim] etc.) and each
parameter carries `logical_axes`, which parallel.py maps to mesh axes.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from gram_jax.models import attention, lora, rope
from gram_jax.models.config import ModelConfig



def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], dtype: str,
           init: str = "normal") -> nnx.Param:
  if init == "ones":
    value = jnp.ones(shape, dtype)
  elif init == "zeros":
    value = jnp.zeros(shape, dtype)
  else:
    value = 0.02 * jax.random.normal(rngs.params(), shape, dtype)
  return nnx.Param(value, logical_axes=axes)


def _weight(param: nnx.Param, dtype: str) -> jnp.ndarray:
  return param[...].astype(dtype)


def dense(x: jnp.ndarray, kernel: jnp.ndarray, contract: int = 1) -> jnp.ndarray:
  """x [..., *in] @ kernel [*in, *out] as one 2-D product over every token at once, in
  x's dtype; `contract` = how many trailing axes of x (leading of kernel) are summed.

  Flattening the tokens first matters on CPU: XLA's gradient of a [batch, seq, in] product
  contracts two token axes and transposes the activation gradient to do it (measured: half
  of an MLP's backward time at the 56M shape).

  The kernel may be a LoRA-adapted or quantized one (`models.lora`).
  """
  lead, inner = x.shape[:x.ndim - contract], kernel.shape[:contract]
  flat = lora.matmul(x.reshape(-1, math.prod(inner)), kernel)
  return flat.reshape(*lead, *kernel.shape[contract:])


class RMSNorm(nnx.Module):
  """Llama's RMSNorm (w times the normed x, in x's dtype), or with an offset (Gemma's:
  (offset + w) times the normed x in float32, then cast; w starts at zero)."""

  def __init__(self, size: int, eps: float, config: ModelConfig, rngs: nnx.Rngs, axis_name: str):
    self.eps, self.offset = eps, config.norm_weight_offset
    self.scale = _param(rngs, (size,), (axis_name,), config.param_dtype,
                        init="zeros" if self.offset else "ones")

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    if self.offset:
      return (normed * (self.offset + self.scale[...].astype(jnp.float32))).astype(x.dtype)
    return _weight(self.scale, x.dtype) * normed.astype(x.dtype)


class Attention(nnx.Module):
  """Grouped-query attention with RoPE, optional q/k/v bias (Qwen2), q/k norm (Qwen3, Gemma)
  and a sliding window with its own RoPE base on a family's local layers (Gemma 3)."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs, index: int = 0):
    self.config = config
    self.window = config.window_of(index)
    self.rope_config = config.replace(rope_theta=config.rope_local_theta,
                                      rope_type="default") if self.window else config
    e, h, kv, d, p = (config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim,
                      config.param_dtype)
    self.q_kernel = _param(rngs, (e, h, d), ("embed", "heads", "head_dim"), p)
    self.k_kernel = _param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), p)
    self.v_kernel = _param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), p)
    self.o_kernel = _param(rngs, (h, d, e), ("heads", "head_dim", "embed"), p)
    if config.qkv_bias:
      self.q_bias = _param(rngs, (h, d), ("heads", "head_dim"), p, init="zeros")
      self.k_bias = _param(rngs, (kv, d), ("kv_heads", "head_dim"), p, init="zeros")
      self.v_bias = _param(rngs, (kv, d), ("kv_heads", "head_dim"), p, init="zeros")
    if config.qk_norm:
      self.q_norm = RMSNorm(d, config.rms_norm_eps, config, rngs, "head_dim")
      self.k_norm = RMSNorm(d, config.rms_norm_eps, config, rngs, "head_dim")

  def project_qkv(self, x: jnp.ndarray, positions: jnp.ndarray):
    """Queries, keys and values [batch, seq, heads, head_dim], normed and rotated."""
    config, dt = self.config, x.dtype
    q, k, v = (dense(x, kernel[...]) for kernel in (self.q_kernel, self.k_kernel, self.v_kernel))
    if config.qkv_bias:
      q, k, v = (q + _weight(self.q_bias, dt), k + _weight(self.k_bias, dt),
                 v + _weight(self.v_bias, dt))
    if config.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    if config.query_pre_attn_scalar and config.query_pre_attn_scalar != config.head_dim:
      # every kernel scales scores by head_dim ** -0.5; the family asks for scalar ** -0.5
      q = q * jnp.asarray(math.sqrt(config.head_dim / config.query_pre_attn_scalar), q.dtype)
    inv_freq = rope.inverse_frequencies(self.rope_config)
    return rope.apply_rope(q, positions, inv_freq), rope.apply_rope(k, positions, inv_freq), v

  def attend(self, q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, q_segments: jnp.ndarray,
             kv_segments: jnp.ndarray, q_offset: jnp.ndarray | int = 0) -> jnp.ndarray:
    """Causal attention of q [b,t,h,d] over k, v [b,s,kv,d] by segment ids (models/attention.py),
    then the output projection."""
    config = self.config
    out = attention.attention(q, k, v, q_segments, kv_segments, causal=True, q_offset=q_offset,
                              implementation=config.attention,
                              block_q=config.attention_block_q,
                              block_kv=config.attention_block_kv, window=self.window)
    return dense(out, self.o_kernel[...], contract=2)

  def __call__(self, x: jnp.ndarray, positions: jnp.ndarray, segments: jnp.ndarray):
    q, k, v = self.project_qkv(x, positions)
    return self.attend(q, k, v, segments, segments)

  def prefill(self, x: jnp.ndarray, positions: jnp.ndarray,
              segments: jnp.ndarray) -> tuple[jnp.ndarray, dict]:
    """Attention over whole prompts, and their keys and values as a head-major cache
    {"k", "v": [b, kv_heads, t, head_dim]} (the layout `attention.decode_attention` reads)."""
    q, k, v = self.project_qkv(x, positions)
    return self.attend(q, k, v, segments, segments), {"k": k.transpose(0, 2, 1, 3),
                                                      "v": v.transpose(0, 2, 1, 3)}

  def decode(self, x: jnp.ndarray, positions: jnp.ndarray, prefix: dict, prefix_ok: jnp.ndarray,
             suffix: dict, suffix_ok: jnp.ndarray, index: jnp.ndarray,
             key_positions: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, dict]:
    """One token per row x [rows, 1, embed] at positions [rows, 1]: writes its key and value
    at `index` of the rows' own cache `suffix` ([rows, kv_heads, s, head_dim]; the caller
    marks the slot in suffix_ok), then attends over its prompt's cache and its own.
    key_positions (of the prompts' keys [prompts, p] and the rows' own [rows, s]) place a
    sliding window."""
    q, k, v = self.project_qkv(x, positions)
    start = (0, 0, index, 0)
    suffix = {name: jax.lax.dynamic_update_slice(
        suffix[name], new.transpose(0, 2, 1, 3).astype(suffix[name].dtype), start)
        for name, new in (("k", k), ("v", v))}
    if self.window:  # keys `window` or more positions back are not attended
      near_prompt = positions.reshape(prefix_ok.shape[0], -1, 1) - key_positions[0][:, None]
      prefix_ok = prefix_ok[:, None] & (near_prompt < self.window)  # [prompts, samples, p]
      suffix_ok = suffix_ok & (positions - key_positions[1] < self.window)
    out = attention.decode_attention(q, prefix["k"], prefix["v"], prefix_ok, suffix["k"],
                                     suffix["v"], suffix_ok)
    return dense(out, self.o_kernel[...], contract=2), suffix


class MLP(nnx.Module):
  """Gated feed-forward: down(act(gate(x)) * up(x)), act SiLU (SwiGLU) or tanh-GeLU (Gemma)."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    e, m, p = config.hidden_size, config.intermediate_size, config.param_dtype
    self.activation = config.mlp_activation
    self.gate_kernel = _param(rngs, (e, m), ("embed", "mlp"), p)
    self.up_kernel = _param(rngs, (e, m), ("embed", "mlp"), p)
    self.down_kernel = _param(rngs, (m, e), ("mlp", "embed"), p)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    gate = dense(x, self.gate_kernel[...])
    gate = jax.nn.silu(gate) if self.activation == "silu" else jax.nn.gelu(gate, approximate=True)
    return dense(gate * dense(x, self.up_kernel[...]), self.down_kernel[...])


class DecoderLayer(nnx.Module):
  """Pre-norm attention and MLP blocks; with sandwich norms (Gemma) each block's output is
  normed too before it joins the residual."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs, index: int = 0):
    norm = lambda: RMSNorm(config.hidden_size, config.rms_norm_eps, config, rngs, "norm")
    self.input_norm = norm()
    self.attn = Attention(config, rngs, index)
    if config.sandwich_norms:
      self.attn_out_norm = norm()
    self.post_attn_norm = norm()  # before the MLP (HF: post_attention_layernorm, Gemma's
    self.mlp = MLP(config, rngs)  # pre_feedforward_layernorm)
    if config.sandwich_norms:
      self.mlp_out_norm = norm()
    self.sandwich = config.sandwich_norms

  def _mlp_block(self, x: jnp.ndarray, attended: jnp.ndarray) -> jnp.ndarray:
    x = x + (self.attn_out_norm(attended) if self.sandwich else attended)
    out = self.mlp(self.post_attn_norm(x))
    return x + (self.mlp_out_norm(out) if self.sandwich else out)

  def __call__(self, x: jnp.ndarray, positions: jnp.ndarray, segments: jnp.ndarray):
    return self._mlp_block(x, self.attn(self.input_norm(x), positions, segments))

  def prefill(self, x, positions, segments):
    attended, cache = self.attn.prefill(self.input_norm(x), positions, segments)
    return self._mlp_block(x, attended), cache

  def decode(self, x, positions, prefix, prefix_ok, suffix, suffix_ok, index, key_positions):
    attended, suffix = self.attn.decode(self.input_norm(x), positions, prefix, prefix_ok,
                                        suffix, suffix_ok, index, key_positions)
    return self._mlp_block(x, attended), suffix


REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the whole layer
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def positions_from_mask(attention_mask: jnp.ndarray) -> jnp.ndarray:
  """Token positions that skip padding, so left-padded rows start at position 0."""
  return jnp.maximum(jnp.cumsum(attention_mask, axis=-1) - 1, 0).astype(jnp.int32)


def project(hidden: jnp.ndarray, head: jnp.ndarray) -> jnp.ndarray:
  """hidden [..., embed] @ head [embed, vocab] -> float32 logits [..., vocab] (tokens
  flattened into one 2-D product, as in `dense`)."""
  flat = jnp.dot(hidden.reshape(-1, hidden.shape[-1]), head, preferred_element_type=jnp.float32)
  return flat.reshape(*hidden.shape[:-1], head.shape[-1])


def row_segments(attention_mask: jnp.ndarray,
                 segment_ids: jnp.ndarray | None = None) -> jnp.ndarray:
  """Segment ids of each token (0 = padding): packed rows' own, else 1 where the mask is set."""
  segments = attention_mask.astype(jnp.int32)
  return segments if segment_ids is None else segments * segment_ids.astype(jnp.int32)


class Decoder(nnx.Module):
  """A causal LM: `model(input_ids, attention_mask)` returns float32 logits [b, t, vocab]."""

  def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
    self.config = config
    self.embed = _param(rngs, (config.vocab_size, config.hidden_size), ("vocab", "embed"),
                        config.param_dtype)
    self.layers = nnx.List([DecoderLayer(config, rngs, i) for i in range(config.num_layers)])
    self.final_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config, rngs, "norm")
    if not config.tie_word_embeddings:
      self.lm_head = _param(rngs, (config.hidden_size, config.vocab_size), ("embed", "vocab"),
                            config.param_dtype)

  def hidden_states(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                    positions: jnp.ndarray | None = None,
                    segment_ids: jnp.ndarray | None = None) -> jnp.ndarray:
    """Final-normed hidden states [b, t, embed]."""
    if attention_mask is None:
      attention_mask = (jnp.ones(input_ids.shape, jnp.int32) if segment_ids is None
                        else (segment_ids > 0).astype(jnp.int32))
    if positions is None:
      positions = positions_from_mask(attention_mask)
    segments = row_segments(attention_mask, segment_ids)
    x = self.embed_tokens(input_ids)
    for layer in self.layers:
      x = self._run_layer(layer, x, positions, segments)
    return self.final_norm(x)

  def _run_layer(self, layer, x, positions, segments):
    if self.config.remat == "none":
      return layer(x, positions, segments)
    policy = REMAT_POLICIES[self.config.remat]
    return nnx.remat(lambda lyr, *a: lyr(*a), policy=policy)(layer, x, positions, segments)

  def embed_tokens(self, ids: jnp.ndarray) -> jnp.ndarray:
    """Token embeddings in the compute dtype (times sqrt(hidden_size), rounded to the
    weights' dtype as transformers does, where the family scales them)."""
    x = jnp.take(self.embed[...], ids, axis=0)
    if self.config.embed_scale:
      x = x * jnp.asarray(math.sqrt(self.config.hidden_size), x.dtype)
    return x.astype(self.config.dtype)

  def head(self, dtype) -> jnp.ndarray:
    """The LM head [embed, vocab] (the tied embedding, transposed, when tied)."""
    if self.config.tie_word_embeddings:
      return _weight(self.embed, dtype).T
    return _weight(self.lm_head, dtype)

  def logits(self, hidden: jnp.ndarray) -> jnp.ndarray:
    """Projects hidden states to float32 vocabulary logits."""
    return project(hidden, self.head(hidden.dtype))

  def prefill(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray
              ) -> tuple[jnp.ndarray, list[dict]]:
    """Runs left-padded prompts [b, t]: final-normed hidden states and, per layer, the
    prompts' keys and values [b, kv_heads, t, head_dim] (the cache decoding reads)."""
    positions = positions_from_mask(attention_mask)
    segments = row_segments(attention_mask)
    x = self.embed_tokens(input_ids)
    cache = []
    for layer in self.layers:
      x, layer_cache = layer.prefill(x, positions, segments)
      cache.append(layer_cache)
    return self.final_norm(x), cache

  def empty_suffix(self, rows: int, length: int) -> list[dict]:
    """Per layer, room for `length` generated keys and values of each row [rows, kv_heads,
    length, head_dim]."""
    shape = (rows, self.config.num_kv_heads, length, self.config.head_dim)
    return [{"k": jnp.zeros(shape, self.config.dtype), "v": jnp.zeros(shape, self.config.dtype)}
            for _ in range(self.config.num_layers)]

  def decode_step(self, token_ids: jnp.ndarray, positions: jnp.ndarray, prefix: list[dict],
                  prefix_ok: jnp.ndarray, suffix: list[dict], suffix_ok: jnp.ndarray,
                  index: jnp.ndarray, key_positions: tuple[jnp.ndarray, jnp.ndarray]
                  ) -> tuple[jnp.ndarray, list[dict]]:
    """One token per row [rows, 1] at `positions` [rows, 1]: writes its keys and values at
    `index` of `suffix` and attends over the row's prompt cache (`prefix`, one per prompt;
    rows = prompts x samples) and its own generated keys (suffix_ok marks them, this token's
    slot included); key_positions are the positions of both (for sliding windows). Returns
    final-normed hidden states [rows, 1, embed] and the new suffix."""
    x = self.embed_tokens(token_ids)
    new_suffix = []
    for layer, layer_prefix, layer_suffix in zip(self.layers, prefix, suffix):
      x, layer_suffix = layer.decode(x, positions, layer_prefix, prefix_ok, layer_suffix,
                                     suffix_ok, index, key_positions)
      new_suffix.append(layer_suffix)
    return self.final_norm(x), new_suffix

  def label_logits(self, hidden: jnp.ndarray, token_ids: tuple[int, ...]) -> jnp.ndarray:
    """Float32 logits of a few tokens only: hidden [..., embed] -> [..., len(token_ids)]."""
    ids = jnp.asarray(token_ids)
    if self.config.tie_word_embeddings:
      head = jnp.take(self.embed[...], ids, axis=0).T
    else:
      head = jnp.take(self.lm_head[...], ids, axis=1)
    return jnp.einsum("...e,ev->...v", hidden, head.astype(hidden.dtype),
                      preferred_element_type=jnp.float32)

  def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
               positions: jnp.ndarray | None = None,
               segment_ids: jnp.ndarray | None = None) -> jnp.ndarray:
    return self.logits(self.hidden_states(input_ids, attention_mask, positions, segment_ids))


def abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """Graph and shape-only state of a Decoder, without allocating parameters."""
  return nnx.split(nnx.eval_shape(lambda: Decoder(config, nnx.Rngs(0))))


def verdict_logits(model: Decoder, input_ids: jnp.ndarray, attention_mask: jnp.ndarray,
                   label_ids: tuple[int, ...]) -> jnp.ndarray:
  """Logits of the label tokens [batch, labels] at the last position (rows are left-padded).

  Only the label columns of the LM head are computed: the full-vocabulary product would be
  thrown away.
  """
  hidden = model.hidden_states(input_ids, attention_mask)[:, -1]
  return model.label_logits(hidden, label_ids)
