"""Section `self_train` (stage self_train): GRAM-R²'s data, rounds, proofs, pseudo-label
filters, step counts and export; rules of its fields and its checks across them; view: its
data files, checked."""
import ml_collections

from gram_jax.config.data import builtin_tasks, named_files
from gram_jax.config.rules import Rule, at_least, one_of, positive, within
from gram_jax.errors import GramError


def add_defaults(c: ml_collections.ConfigDict) -> None:
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


RULES: dict[str, Rule] = {
    "self_train.policy_init": one_of("base", "previous"),
    "self_train.final_mode": one_of("rationale", "verdict"),
    "self_train.export": one_of("final", "best_validation"),
    "self_train.judge_samples": at_least(1),
    "self_train.learning_rate": positive,
    "self_train.round_learning_rate": positive,
    "self_train.min_vote_share": within(0.5, 1.0, closed=True),
}


def check_judge_sampling(c: ml_collections.ConfigDict) -> None:
  """Several judgments per order need sampling."""
  if c.stage == "self_train" and c.self_train.judge_samples > 1 and \
      c.self_train.judge_temperature <= 0:
    raise GramError(f"config.self_train.judge_temperature must be > 0 to sample "
                    f"{c.self_train.judge_samples} judgments per order (greedy ones are all "
                    "the same)")


SELF_TRAIN_FILES = ("seed_files", "labeled_files", "unlabeled_files", "heldout_files",
                    "task_files", "validation_files")


def files(c: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """Real-data self-training needs seed proofs, labeled and unlabeled pairs (held-out is
  optional); without any of them the built-in task supplies all four."""
  given = {f: c.self_train[f] for f in SELF_TRAIN_FILES}
  if any(named_files(v) for v in given.values()) or not builtin_tasks(c):
    for field in SELF_TRAIN_FILES[:3]:
      if not named_files(given[field]):
        raise GramError(f"config.self_train.{field}: required when not running the built-in "
                        "task (set seed_files, labeled_files and unlabeled_files)")
    if c.self_train.final_finetune_steps and not named_files(given["task_files"]):
      raise GramError("config.self_train.task_files: required for task adaptation "
                      "(final_finetune_steps > 0): the target task's own labeled pairs, not "
                      "the warm-start labeled_files (or set final_finetune_steps=0)")
    if c.self_train.final_finetune_steps and \
        set(named_files(given["task_files"])) <= set(named_files(given["labeled_files"])):
      raise GramError("config.self_train.task_files: the same files as labeled_files; task "
                      "adaptation would retrain on warm-start data")
    if c.self_train.export == "best_validation" and not named_files(given["validation_files"]):
      raise GramError("config.self_train.validation_files: required for export=best_validation "
                      "(labeled pairs that are not held-out test pairs), or set export=final")
    if c.self_train.export == "best_validation" and set(named_files(given["validation_files"])) \
        & set(named_files(given["heldout_files"])):
      raise GramError("config.self_train.validation_files: a held-out file; the exported "
                      "model must not be chosen on the pairs the report tests on")
  return [(f"self_train.{f}", v) for f, v in given.items()]
