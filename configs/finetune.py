"""GRAM stage 2: label-smoothed preference fine-tuning on the verdict token.

  python -m gram_jax.main --config=configs/finetune.py              # tiny model, built-in task
  python -m gram_jax.main --config=configs/finetune.py:qwen3-8b \
      --config.model.path=runs/pretrain-qwen3-8b --config.data.train_files=gram_ft.jsonl \
      --config.eval.files=heldout.jsonl

The empty preset trains a tiny model from scratch on the built-in number-comparison task
with the compact judging prompt (a CPU minute) and reports accuracy on held-out pairs it
never saw; named presets use the official GRAM prompt. (A verdict-only tiny model learns
this rule; it does not learn the category task's word knowledge from one bit a pair: see the
baseline row of the self_train table.)
"""
from gram_jax import configlib


def get_config(preset: str = ""):
  c = configlib.base_config("finetune")
  c.template.judge = "compact"
  c.data.builtin_tasks = "comparison"
  c.data.cutoff_len = 64
  c.data.seq_len = 64
  c.data.builtin_pairs = 900
  c.train.learning_rate = 3e-3
  c.train.num_steps = 400
  c.train.per_device_batch_size = 16
  c.eval.every_steps = 100
  if preset:
    configlib.apply_model_preset(c, preset)
    # Official GRAM stage 2: lr 2e-5, 2 epochs, cosine, warmup 0.1, label smoothing 0.1.
    c.template.judge = "gram"
    c.train.learning_rate = 2e-5
    c.train.num_steps = -1
    c.train.num_epochs = 2.0
    c.train.per_device_batch_size = 2
    c.train.micro_batches = 16
    c.eval.every_steps = 200
  return c
