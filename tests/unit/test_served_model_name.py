"""The OpenAI `model` field a served judge answers with."""
from gram_jax.stages.serve import served_model_name


def test_the_name_skips_export_and_checkpoint_folders():
  assert served_model_name("runs/gram-qwen3/hf") == "gram-qwen3"
  assert served_model_name("/models/Qwen3-8B/") == "Qwen3-8B"
  assert served_model_name("runs/x/checkpoints/1200") == "x"
  assert served_model_name("gs://bucket/gram-llama/export") == "gram-llama"
  assert served_model_name("hf") == "gram_jax"
  assert served_model_name("") == "gram_jax"
