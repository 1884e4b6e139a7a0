"""Rotary position embeddings, computed the way transformers computes them (float32)."""
import math

import jax.numpy as jnp
import numpy as np

from gram_jax.models.config import ModelConfig


def inverse_frequencies(config: ModelConfig) -> np.ndarray:
  """Per-pair rotation frequencies [head_dim // 2], including rope scaling."""
  exponents = np.arange(0, config.head_dim, 2, dtype=np.int64).astype(np.float32) / config.head_dim
  inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
  if config.rope_type == "linear":
    return (inv_freq / np.float32(config.rope_factor)).astype(np.float32)
  if config.rope_type == "llama3":
    return _llama3_scaling(inv_freq, config)
  return inv_freq


def _llama3_scaling(inv_freq: np.ndarray, config: ModelConfig) -> np.ndarray:
  """Llama 3.1 long-context scaling: slow low frequencies, keep high ones, blend between."""
  factor = config.rope_factor
  old_len = config.rope_original_max_position
  low_freq_wavelen = old_len / config.rope_low_freq_factor
  high_freq_wavelen = old_len / config.rope_high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - config.rope_low_freq_factor) / (
      config.rope_high_freq_factor - config.rope_low_freq_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, inv_freq: np.ndarray) -> jnp.ndarray:
  """Rotates x [batch, seq, heads, head_dim] by positions [batch, seq] (rotate-half layout)."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  out = x.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin
  return out.astype(x.dtype)
