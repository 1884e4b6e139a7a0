"""Model FLOPs per token and accelerator peaks, for MFU."""
import jax

from gram_jax.models.config import ModelConfig

# Dense bf16 peak FLOP/s per device (vendor figures, no sparsity).
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def training_flops_per_token(model_config: ModelConfig, seq_len: int) -> float:
  """6 x matmul parameters + attention (PaLM appendix B), forward and backward."""
  embedding = model_config.vocab_size * model_config.hidden_size
  matmul_params = model_config.num_params() - (0 if model_config.tie_word_embeddings
                                               else embedding)
  attention = (12 * model_config.num_layers * model_config.num_heads * model_config.head_dim *
               seq_len)
  return 6.0 * matmul_params + attention


def peak_flops_per_device(override: float = 0.0) -> float | None:
  """Peak FLOP/s of device 0 by its kind, or None where unknown (e.g. CPU)."""
  if override:
    return override
  kind = jax.devices()[0].device_kind
  for name, flops in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return flops
  return None
