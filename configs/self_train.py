"""GRAM-R² self-training, the main job: prover, warm start, self-training rounds.

  python -m gram_jax.main --config=configs/self_train.py       # built-in task, tiny models, CPU
  python -m gram_jax.main --config=configs/self_train.py:smoke  # the same, every step, ~3.5 min
  python -m gram_jax.main --config=configs/self_train.py:llama3.2-3b \
      --config.model.path=/models/Llama-3.2-3B-Instruct \
      --config.self_train.seed_files=helpsteer3_proofs.jsonl \
      --config.self_train.labeled_files=prefs.jsonl \
      --config.self_train.unlabeled_files=se_round1.jsonl,se_round2.jsonl,se_round3.jsonl \
      --config.self_train.heldout_files=rmbench_chat.json \
      --config.self_train.task_files=helpsteer3_1k.jsonl

The empty preset runs on a fresh machine with no network: the built-in verifiable task, a
BPE tokenizer trained on it, tiny models trained from scratch, the compact prompts. `:smoke`
runs every sub-step of it (prover, baseline, warm start, one round, task adaptation, export)
on smaller splits with fewer steps: a check that the pipeline works here, not a result.
"""
from gram_jax import configlib
from gram_jax.config.model import apply_model_preset
from gram_jax.config import self_train


def get_config(preset: str = ""):
  c = configlib.base_config("self_train")
  c.template.judge = "compact_rr"
  c.data.builtin_tasks = "category"
  c.data.cutoff_len = 160  # one built-in example with its rationale is ~140 tokens
  c.data.seq_len = 320     # rows of two packed examples
  c.train.per_device_batch_size = 8
  self_train.add_defaults(c)
  if preset in ("", "smoke"):
    configlib.demo_recipe(c, "template.judge", "data.cutoff_len", "self_train.learning_rate",
                          "self_train.round_learning_rate")
  if preset == "smoke":
    c.self_train.update(dict(rounds=1, seed_pairs=100, labeled_pairs=40, unlabeled_pairs=150,
                             heldout_pairs=100, task_pairs=40, prover_steps=300,
                             policy_steps=400, policy_epochs=3.0, round_steps=150,
                             final_finetune_steps=50))
  elif preset:
    apply_model_preset(c, preset, stage_presets=("smoke",))
    c.template.judge = "gram_rr"
    c.data.builtin_tasks = ""
    c.self_train.update(dict(rounds=3, max_new_tokens=1024, judge_temperature=0.75,
                             batch_size=64, prover_steps=2000, policy_steps=4000,
                             policy_init="base", round_steps=4000, learning_rate=1e-5,
                             round_learning_rate=1e-5, verdict_cutoff_len=0,
                             final_finetune_steps=1000,
                             unlabeled_pairs=500_000, labeled_pairs=0, seed_pairs=0,
                             task_pairs=0, validation_pairs=0))
  return c
