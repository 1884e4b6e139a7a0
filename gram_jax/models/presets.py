"""Architectures of public checkpoints, for benchmarks and from-scratch runs (no weights)."""
from gram_jax.models.config import ModelConfig

ARCHITECTURES = {
    "tiny": dict(family="qwen3", vocab_size=1024, hidden_size=128, intermediate_size=320,
                 num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                 tie_word_embeddings=True),
    "small": dict(family="llama", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                  num_layers=8, num_heads=8, num_kv_heads=4, head_dim=64, qk_norm=False,
                  tie_word_embeddings=False),
    "llama3.2-1b": dict(family="llama", vocab_size=128256, hidden_size=2048,
                        intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8,
                        head_dim=64, rope_theta=500000.0, rope_type="llama3", rope_factor=32.0,
                        rope_original_max_position=8192, tie_word_embeddings=True,
                        qk_norm=False),
    "qwen3-1.7b": dict(family="qwen3", vocab_size=151936, hidden_size=2048,
                       intermediate_size=6144, num_layers=28, num_heads=16, num_kv_heads=8,
                       head_dim=128, rope_theta=1000000.0, tie_word_embeddings=True,
                       rms_norm_eps=1e-6),
    "llama3.2-3b": dict(family="llama", vocab_size=128256, hidden_size=3072,
                        intermediate_size=8192, num_layers=28, num_heads=24, num_kv_heads=8,
                        head_dim=128, rope_theta=500000.0, rope_type="llama3", rope_factor=32.0,
                        rope_original_max_position=8192, tie_word_embeddings=True,
                        qk_norm=False),
}


def architecture(name: str, **overrides) -> ModelConfig:
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
  return ModelConfig(**{**ARCHITECTURES[name], **overrides})
