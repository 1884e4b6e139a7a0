"""GRAM stage 2: label-smoothed preference fine-tuning on the verdict token.

  python -m gram_jax.main --config=configs/finetune.py              # tiny model, built-in task
  python -m gram_jax.main --config=configs/finetune.py:qwen3-8b \
      --config.model.path=runs/pretrain-qwen3-8b --config.data.train_files=gram_ft.jsonl \
      --config.eval.files=heldout.jsonl
  # the real SmolLM2-135M-Instruct on a CPU (built offline once: gram_jax.hf.smollm2)
  python -m gram_jax.main --config=configs/finetune.py:smollm2-135m

The empty preset trains a tiny model from scratch on the built-in number-comparison task
with the compact judging prompt (a CPU minute) and reports accuracy on held-out pairs it
never saw; named presets use the official GRAM prompt. `:smollm2-135m` fine-tunes the real
model at a CPU's scale: one epoch of 200 built-in pairs (or data.train_files), 4 rows of 1,024
tokens a step. (A verdict-only tiny model learns
this rule; it does not learn the category task's word knowledge from one bit a pair: see the
baseline row of the self_train table.)
"""
from gram_jax import configlib
from gram_jax.config.model import OFFLINE_MODELS, apply_model_preset


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
  if not preset:
    configlib.demo_recipe(c, "template.judge", "train.learning_rate", "train.num_steps",
                          "data.cutoff_len")
  else:
    apply_model_preset(c, preset)
    # Official GRAM stage 2: lr 2e-5, 2 epochs, cosine, warmup 0.1, label smoothing 0.1.
    c.template.judge = "gram"
    c.train.learning_rate = 2e-5
    c.train.num_steps = -1
    c.train.num_epochs = 2.0
    c.train.per_device_batch_size = 2
    c.train.micro_batches = 16
    c.eval.every_steps = 200
  if preset in OFFLINE_MODELS:
    c.train.num_epochs = 1.0
    c.train.per_device_batch_size = 4
    c.train.micro_batches = 1
    c.data.builtin_pairs = 200
    c.eval.every_steps = 0
  return c
