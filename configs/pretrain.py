"""GRAM stage 1: unsupervised pair pre-training.

  python -m gram_jax.main --config=configs/pretrain.py            # tiny model, built-in data
  python -m gram_jax.main --config=configs/pretrain.py:qwen3-8b \
      --config.model.path=/models/Qwen3-8B --config.data.train_files=pretrain.jsonl
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset


def get_config(preset: str = ""):
  c = configlib.base_config("pretrain")
  c.train.num_epochs = 2.0
  c.train.num_steps = -1
  if not preset:
    configlib.demo_recipe(c, "train.learning_rate", "data.cutoff_len")
  else:
    apply_model_preset(c, preset)
    # Official GRAM stage 1: lr 1e-5, 1 epoch, cosine, warmup 0.1, 2 x 16 accumulation.
    c.train.learning_rate = 1e-5
    c.train.num_epochs = 1.0
    c.train.per_device_batch_size = 2
    c.train.micro_batches = 16
    c.data.pack = False
  return c
