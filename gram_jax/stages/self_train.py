"""GRAM-R² self-training (the main job): prover, warm start, R rounds, task adaptation.

  workdir/prover/            π_ψ trained on seed proofs
  workdir/baseline/          labeled-only GRAM verdict fine-tuning on the same gold labels
  workdir/round_0/           warm start: proofs of the labeled set, π_φ trained on them
  workdir/round_r/           judged.jsonl (k votes per order, rule checks, why each pair was
                             dropped) -> kept.jsonl -> proofs.jsonl, π_φ retrained
  workdir/final/             task adaptation of the last π_φ (rationale SFT, or verdict-only)
  workdir/<stage>/heldout.jsonl  every held-out judgment's reply (validation.jsonl likewise)
  workdir/rounds.jsonl, report.md, config.json, hf/ (the model the report marks exported:
                             the last stage, or the best on validation pairs)

Every sub-step writes its output atomically and training resumes from its checkpoints, so a
killed run, rerun, continues at the sub-step (and training step) it reached.
"""
import os
import time

import jax
import ml_collections
from absl import logging

from gram_jax import pretrained, pseudo_labels, storage
from gram_jax.data import preference
from gram_jax.hf.export import save_pretrained
from gram_jax.journal import write_jsonl
from gram_jax.judge_card import JUDGE_CARD
from gram_jax.stages import common, self_train_report
from gram_jax.stages.self_train_files import once, publish, read_json, read_jsonl, trimmed_proofs
from gram_jax.stages.self_train_job import SelfTrainJob


def kept_items(job: SelfTrainJob, round_index: int) -> list[dict]:
  return [{k: row[k] for k in ("prompt", "response_a", "response_b", "label")}
          for row in read_jsonl(job.path(f"round_{round_index}", "kept.jsonl"))]


def pseudo_labeled_file(job: SelfTrainJob, rounds: int) -> str:
  """Every kept pseudo-label so far as {prompt, chosen, rejected}, for verdict fine-tuning."""
  def rows():
    out = []
    for r in range(1, rounds + 1):
      out += [preference.preference_row(i["prompt"], i["response_a"], i["response_b"],
                                        i["label"], job.labels[0]) for i in kept_items(job, r)]
    return out
  return common.builtin_jsonl(job.path("final", "pseudo_labeled.jsonl"), rows)


def task_targets(job: SelfTrainJob, prover_dir: str) -> tuple[list[str], dict]:
  """Task adaptation's SFT files: rows that bring their own rationale are the target as
  written; π_ψ proves the others (both orders). And what the report says of them."""
  own = [t.proved for t in job.task if t.proved is not None]
  to_prove = [t.pair for t in job.task if t.proved is None]
  targets = []
  if own:
    targets.append(common.builtin_jsonl(job.path("final", "task_rationales.jsonl"),
                                       lambda: [vars(p) for p in own]))
  if to_prove:
    targets.append(job.prove(prover_dir, preference.both_orders(to_prove),
                             job.path("final", "proofs.jsonl"), "task adaptation: proving"))
  trimmed = trimmed_proofs(targets[-1]) if to_prove else 0
  return targets, {"task_pairs": len(job.task), "task_own_rationales": len(own),
                   "proof_prompts_trimmed": trimmed}


def export_choice(job: SelfTrainJob, rows: list[dict],
                  models: list[tuple[int, str, bool]]) -> int:
  """Which of `models` (row, run directory, reasoning judge?) goes to hf/: the last one
  (export=final, the paper), or the best on the validation pairs (best_validation), whose
  figures join the rows."""
  if job.s.export == "final":
    return len(models) - 1
  accuracies = []
  for index, model, reasoning in models:
    folder = os.path.dirname(model) if reasoning else model
    stage = rows[index]["stage"]
    measure = (lambda: job.measure_policy(model, job.validation_triples,
                                          f"{stage}: validation judging",
                                          os.path.join(folder, "validation.jsonl"))) \
        if reasoning else (lambda: job.measure_verdict_model(model, job.validation_triples))
    rows[index]["validation_accuracy"] = once(os.path.join(folder, "validation.json"),
                                              measure)["accuracy"]
    accuracies.append(rows[index]["validation_accuracy"])
  return pseudo_labels.choose_export(accuracies)


def run(c: ml_collections.ConfigDict) -> None:
  started = time.monotonic()
  s = c.self_train
  job = SelfTrainJob(c)
  rows, models = [], []  # models: (row, run directory, reasoning judge?) that can be exported

  def add(row: dict, model: str = "", reasoning: bool = True) -> None:
    rows.append({**row, "model": os.path.relpath(model, c.workdir)} if model else row)
    logging.info("%s", self_train_report.row_line(row, len(job.heldout_triples)))
    if model:
      models.append((len(rows) - 1, model, reasoning))

  prover_dir = job.train_prover()
  if s.baseline and job.heldout_triples:  # the same gold labels, the same step budget
    add({"stage": "labeled-only fine-tuning (same gold labels)", **once(
        job.path("baseline", "result.json"),
        lambda: job.verdict_finetune("baseline", [job.gold_file()], s.policy_steps))})
  proof_files = [job.prove(prover_dir, preference.both_orders(job.labeled),
                           job.path("round_0", "proofs.jsonl"), "warm start: proving")]
  warm_trimmed = trimmed_proofs(proof_files[0])
  if s.seeds_in_warm_start:
    proof_files = job.files["seed"] + proof_files
  policy = job.train_policy("round_0", proof_files)
  add({"stage": "warm start", "proof_prompts_trimmed": warm_trimmed, **once(
      job.path("round_0", "result.json"), lambda: job.evaluate_policy(policy, "warm start"))},
      policy)
  for r in range(1, s.rounds + 1):
    labels = job.path(f"round_{r}", "labels.json")
    stats = read_json(labels) if storage.exists(labels) else job.label_round(policy, r)
    proof_files.append(job.prove(prover_dir, kept_items(job, r),
                                 job.path(f"round_{r}", "proofs.jsonl"),
                                 f"round {r}: proving the kept pairs"))
    policy = job.train_policy(f"round_{r}", proof_files,
                              start_from=policy if s.policy_init == "previous" else "")
    add({"stage": f"round {r}", **stats,
         "proof_prompts_trimmed": trimmed_proofs(proof_files[-1]),
         **once(job.path(f"round_{r}", "result.json"),
                lambda: job.evaluate_policy(policy, f"round {r}"))}, policy)
  if s.final_finetune_steps and s.final_mode == "rationale":
    task_files, task_counts = task_targets(job, prover_dir)
    adapted = job.train_policy("final", task_files, start_from=policy,
                               min_steps=s.final_finetune_steps)
    add({"stage": "task adaptation (rationale + verdict SFT)", **task_counts, **once(
        job.path("final", "result.json"),
        lambda: job.evaluate_policy(adapted, "task adaptation"))}, adapted)
  elif s.final_finetune_steps and s.final_mode == "verdict":
    task_pairs = common.builtin_jsonl(job.path("final", "task_pairs.jsonl"),
                                     lambda: [t.pair.as_row() for t in job.task])
    add({"stage": "task adaptation (label-smoothed verdict only)",
         "task_pairs": len(job.task), **once(
             job.path("final", "result.json"), lambda: job.verdict_finetune(
                 "final", [task_pairs, pseudo_labeled_file(job, s.rounds)],
                 s.final_finetune_steps, start_from=policy))}, job.path("final"), False)
  exported = models[export_choice(job, rows, models)]
  text = self_train_report.report(
      c, rows, exported[0], {"heldout": len(job.heldout_triples),
                             "validation": len(job.validation_triples)},
      time.monotonic() - started)

  def write_report() -> None:
    write_jsonl(rows, job.path("rounds.jsonl"))
    storage.write_atomic(job.path("config.json"), c.to_json_best_effort(indent=2))
    storage.write_atomic(job.path("report.md"), text)
  publish(job.path("report.md"), write_report)
  save_pretrained(pretrained.load_pretrained(exported[1]), job.path("hf"),
                  tokenizer=job.tokenizer)
  if jax.process_index() == 0:  # read as the report measured it (the model's own card)
    storage.write_atomic(os.path.join(job.path("hf"), JUDGE_CARD),
                         storage.read_text(os.path.join(exported[1], JUDGE_CARD)))
  print(text)
  logging.info("exported %s (%s) to %s", exported[1], rows[exported[0]]["stage"],
               job.path("hf"))
