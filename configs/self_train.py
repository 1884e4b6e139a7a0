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
import ml_collections

from gram_jax import configlib


def get_config(preset: str = ""):
  c = configlib.base_config("self_train")
  c.template.judge = "compact_rr"
  c.data.builtin_tasks = "category"
  c.data.cutoff_len = 160  # one built-in example with its rationale is ~140 tokens
  c.data.seq_len = 320     # rows of two packed examples
  c.train.per_device_batch_size = 8
  c.self_train = ml_collections.ConfigDict(dict(
      # Real data (comma-separated files, hf://, tfds://); all empty = the built-in task.
      seed_files="",            # proved pairs {question, response_A, response_B, label, rationale}
      labeled_files="",         # rationale-free labeled pairs for the warm start
      unlabeled_files="",       # unlabeled pairs; round r reads file (r - 1) mod count
      heldout_files="",         # labeled pairs for the per-round accuracy (optional)
      validation_files="",      # labeled pairs, none of them held-out, that choose the
                                # exported model when export=best_validation
      task_files="",            # the target task's labeled pairs, for task adaptation: rows
                                # {prompt, response_a, response_b, label, rationale|feedback}
                                # are trained on as written, others proved by π_ψ
      baseline=True,            # also train labeled-only GRAM fine-tuning on the same gold labels
      seeds_in_warm_start=True,  # π_φ's warm start also trains on the seed proofs themselves
      rounds=2,                 # R
      policy_init="previous",   # each round trains π_φ from: base (the base model, on all
                                # proofs so far) | previous (the last round's π_φ)
      seed_pairs=200,           # seed proofs for π_ψ (built-in task)
      labeled_pairs=60,         # rationale-free labeled pairs
      unlabeled_pairs=300,      # fresh unlabeled pairs per round
      heldout_pairs=200,
      task_pairs=60,            # the built-in task's own pairs for task adaptation
      validation_pairs=100,     # the built-in task's validation pairs (export=best_validation)
      proofs_per_pair=2,        # k sampled proofs; the best by Score is kept
      proof_temperature=0.7,
      judge_samples=3,          # judgments of π_φ per order; the pseudo-label is their majority
      judge_temperature=0.7,    # sampling temperature of those judgments (> 0 when sampling)
      min_vote_share=0.6,       # drop a pair whose majority has a smaller share of the votes
      confidence_threshold=0.7,  # drop a pair whose mean P(label) at <answer> is lower
      keep_top_fraction=0.0,    # > 0: keep this fraction of the most confident instead
      max_rationale_chars=2000,  # a longer rationale breaks a rule: that judgment does not vote
      max_new_tokens=96,
      batch_size=32,
      prover_steps=600,
      policy_steps=600,         # at least this many steps a training of π_φ from the base
      policy_epochs=6.0,        # and at least this many epochs over its proofs
      learning_rate=3e-3,
      round_steps=300,          # steps of a round continuing from the previous π_φ
      round_learning_rate=1e-3,  # its peak learning rate (also the task adaptation's)
      verdict_cutoff_len=96,    # sequence length of the verdict fine-tunings (0 = cutoff_len)
      final_finetune_steps=100,  # > 0: task adaptation of the final π_φ, at least these steps
      final_mode="rationale",   # rationale (+ verdict) SFT on proved task pairs, as the paper;
                                # or verdict: label-smoothed verdict-only fine-tuning
      export="final",           # which π_φ goes to hf/: final (the last stage, as the paper) |
                                # best_validation (the best warm start / round / final model on
                                # the validation pairs; the held-out figures stay untouched)
  ))
  if preset in ("", "smoke"):
    configlib.demo_recipe(c, "template.judge", "data.cutoff_len", "self_train.learning_rate",
                          "self_train.round_learning_rate")
  if preset == "smoke":
    c.self_train.update(dict(rounds=1, seed_pairs=100, labeled_pairs=40, unlabeled_pairs=150,
                             heldout_pairs=100, task_pairs=40, prover_steps=300,
                             policy_steps=400, policy_epochs=3.0, round_steps=150,
                             final_finetune_steps=50))
  elif preset:
    configlib.apply_model_preset(c, preset, stage_presets=("smoke",))
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
