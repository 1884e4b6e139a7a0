"""GRAM-R² self-training, the main job: prover, warm start, self-training rounds.

  python -m gram_jax.main --config=configs/self_train.py       # built-in task, tiny models, CPU
  python -m gram_jax.main --config=configs/self_train.py:llama3.2-3b \
      --config.model.path=/models/Llama-3.2-3B-Instruct ...

The empty preset runs on a fresh machine with no network: the built-in verifiable task, a
BPE tokenizer trained on it, tiny models trained from scratch, the compact prompts.
"""
import ml_collections

from gram_jax import configlib


def get_config(preset: str = ""):
  c = configlib.base_config("self_train")
  c.template.judge = "compact_rr"
  c.data.builtin_tasks = "category"
  c.data.cutoff_len = 192
  c.data.seq_len = 192
  c.train.per_device_batch_size = 8
  c.self_train = ml_collections.ConfigDict(dict(
      rounds=2,                 # R
      seed_pairs=300,           # seed proofs for π_ψ (built-in task)
      labeled_pairs=40,         # rationale-free labeled pairs
      unlabeled_pairs=400,      # fresh unlabeled pairs per round
      heldout_pairs=100,
      proofs_per_pair=2,        # k sampled proofs; the best by Score is kept
      proof_temperature=0.7,
      judge_temperature=0.0,
      confidence_threshold=0.7,
      keep_top_fraction=0.0,    # > 0: keep this fraction of the most confident instead
      max_rationale_chars=2000,
      max_new_tokens=120,
      batch_size=32,
      prover_steps=300,
      policy_steps=300,         # at least this many steps a training of π_φ
      policy_epochs=6.0,        # and at least this many epochs over its proofs
      learning_rate=3e-3,
  ))
  if preset:
    configlib.apply_model_preset(c, preset)
    c.template.judge = "gram_rr"
    c.self_train.update(dict(max_new_tokens=1024, judge_temperature=0.75, batch_size=64,
                             prover_steps=2000, policy_steps=4000, learning_rate=1e-5,
                             unlabeled_pairs=500_000, labeled_pairs=0, seed_pairs=0))
  return c
