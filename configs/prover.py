"""GRAM-R² preference-proving model π_ψ (LM loss on the rationale given pair and label).

  python -m gram_jax.main --config=configs/prover.py                # tiny model, built-in proofs
  python -m gram_jax.main --config=configs/prover.py:qwen3-8b \
      --config.model.path=/models/Qwen3-8B --config.data.train_files=seed_proofs.jsonl
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset


def get_config(preset: str = ""):
  c = configlib.base_config("prover")
  c.data.builtin_tasks = "category"
  c.data.builtin_pairs = 800
  c.data.cutoff_len = 192
  c.data.seq_len = 192
  c.train.learning_rate = 3e-3
  c.train.num_steps = 250
  c.train.per_device_batch_size = 8
  if not preset:
    configlib.demo_recipe(c, "train.learning_rate", "train.num_steps", "data.cutoff_len")
  else:
    apply_model_preset(c, preset)
    c.train.learning_rate = 1e-5
    c.train.num_steps = -1
    c.train.num_epochs = 2.0
    c.train.per_device_batch_size = 2
    c.train.micro_batches = 16
  return c
