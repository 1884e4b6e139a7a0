"""GRAM-R² self-training (the main job): prover, warm start, R rounds, report, HF export.

  workdir/prover/            π_ψ trained on seed proofs
  workdir/baseline/          labeled-only GRAM verdict fine-tuning, for comparison
  workdir/round_0/           warm start: proofs of the labeled set, π_φ trained on them
  workdir/round_r/           judged.jsonl -> kept.jsonl -> proofs.jsonl, π_φ retrained
  workdir/rounds.jsonl, report.md, hf/

Every sub-step writes its output atomically and training resumes from its checkpoints, so a
killed run, rerun, continues at the sub-step (and training step) it reached.
"""
import copy
import hashlib
import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from gram_jax import configlib, model_setup, pretrained, synthetic
from gram_jax import tokenizer as tok
from gram_jax.data import preference, records
from gram_jax.generate import Generator, Sampling
from gram_jax.hf.export import save_pretrained
from gram_jax.journal import Journal, run_in_chunks, write_atomic
from gram_jax.reasoning import ReasoningJudge
from gram_jax.reward import Reasoning, RewardModel, write_judge_card
from gram_jax.stages import builtin_jsonl, finetune, prover


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def once(path: str, make: Callable[[], Any]) -> Any:
  """Runs `make` unless its JSON result at `path` exists; writes it atomically."""
  if os.path.exists(path):
    return _read_json(path)
  value = make()
  if jax.process_index() == 0:
    write_atomic(path, json.dumps(value))
  return value


def sub_config(c: ml_collections.ConfigDict, workdir: str, steps: int,
               learning_rate: float) -> ml_collections.ConfigDict:
  sub = copy.deepcopy(c)
  with sub.unlocked():
    sub.workdir, sub.train.num_steps, sub.train.learning_rate = workdir, steps, learning_rate
    sub.tokenizer.path = os.path.join(c.workdir, "tokenizer")
  return sub


def data_files(c: ml_collections.ConfigDict) -> dict[str, list[str]]:
  """The configured files, or the built-in task's: seed proofs, a few labeled pairs,
  unlabeled pools (gold kept aside for the report) and a held-out split."""
  s = c.self_train
  if configlib.data_files(s.labeled_files):
    return {"seed": configlib.data_files(s.seed_files),
            "labeled": configlib.data_files(s.labeled_files),
            "heldout": configlib.data_files(s.heldout_files),
            "unlabeled": configlib.data_files(s.unlabeled_files)}
  tasks, base = configlib.builtin_tasks(c), os.path.join(c.workdir, "data")
  path = lambda name: os.path.join(base, name)
  unlabeled = [builtin_jsonl(path(f"unlabeled_{r}.jsonl"), lambda r=r: synthetic.as_unlabeled(
      synthetic.make_pairs(s.unlabeled_pairs, c.seed + 100 + r, tasks), c.seed + r))
      for r in range(1, s.rounds + 1)]
  return {
      "seed": [builtin_jsonl(path("seed_proofs.jsonl"), lambda: synthetic.as_proved(
          synthetic.make_pairs(s.seed_pairs, c.seed, tasks), c.seed))],
      "labeled": [builtin_jsonl(path("labeled.jsonl"), lambda: synthetic.make_pairs(
          s.labeled_pairs, c.seed + 1, tasks))],
      "heldout": [builtin_jsonl(path("heldout.jsonl"), lambda: synthetic.make_pairs(
          s.heldout_pairs, c.seed + 10_000, tasks))],
      "unlabeled": unlabeled}


def write_jsonl(rows: list[dict], path: str) -> str:
  if jax.process_index() == 0:
    synthetic.write_jsonl(rows, path)
  return path


class SelfTraining:
  """Holds what every sub-step shares: the config, tokenizer and file locations."""

  def __init__(self, c: ml_collections.ConfigDict):
    self.c, self.s = c, c.self_train
    self.tokenizer = model_setup.load_or_build_tokenizer(c)
    self.files = data_files(c)
    read = lambda paths, parse: records.read_records(paths, parse, c.data.on_bad_record)[0]
    self.labeled = read(self.files["labeled"], preference.parse_preference_pair)
    self.heldout = read(self.files["heldout"], preference.parse_preference_pair)
    self.heldout_triples = [(p.prompt, p.chosen, p.rejected) for p in self.heldout]

  def path(self, *parts: str) -> str:
    return os.path.join(self.c.workdir, *parts)

  def train_prover(self) -> str:
    sub = sub_config(self.c, self.path("prover"), self.s.prover_steps, self.s.learning_rate)
    prover.train_on_proofs(sub, self.tokenizer, self.files["seed"],
                           prover.prover_encoder(sub, self.tokenizer), sub.workdir)
    return sub.workdir

  def train_policy(self, round_index: int, proof_files: list[str]) -> str:
    """π_φ from the base model on every proof so far, for at least policy_epochs epochs."""
    rows = sum(1 for path in proof_files for _ in open(path, encoding="utf-8"))
    per_step = configlib.rows_per_process(self.c) * jax.process_count() * \
        self.c.train.micro_batches
    steps = max(self.s.policy_steps, int(np.ceil(self.s.policy_epochs * rows / per_step)))
    sub = sub_config(self.c, self.path(f"round_{round_index}", "policy"), steps,
                     self.s.learning_rate)
    prover.train_on_proofs(sub, self.tokenizer, proof_files,
                           prover.policy_encoder(sub, self.tokenizer), sub.workdir)
    return sub.workdir

  def verdict_finetune(self, name: str, train_files: list[str], steps: int,
                       start_from: str = "") -> float | None:
    """GRAM label-smoothed verdict fine-tuning (stage finetune, no rationale) into
    workdir/name, from `start_from` (a run directory) or the base model; held-out accuracy."""
    sub = sub_config(self.c, self.path(name), steps, self.s.learning_rate)
    with sub.unlocked():
      sub.stage = "finetune"
      sub.template.judge = {"gram_rr": "gram", "compact_rr": "compact"}.get(
          self.c.template.judge, self.c.template.judge)
      sub.data.cutoff_len = sub.data.seq_len = self.s.verdict_cutoff_len or sub.data.cutoff_len
      sub.data.train_files = ",".join(train_files)
      sub.eval.files = ",".join(self.files["heldout"])
      sub.eval.every_steps = 0
      if start_from:
        sub.model.path = start_from
    finetune.run(sub)
    if not self.heldout_triples:
      return None
    reward = RewardModel.from_pretrained(sub.workdir, max_len=sub.data.cutoff_len,
                                         template=configlib.judge_template(sub))
    scores = reward.score_batch(self.heldout_triples)
    return float(np.mean(scores[:, 0] > scores[:, 1]))

  def heldout_accuracy(self, policy_dir: str) -> float | None:
    return self.judge(policy_dir).accuracy(self.heldout_triples) if self.heldout_triples \
        else None

  def judge(self, policy_dir: str) -> ReasoningJudge:
    return ReasoningJudge(pretrained.load_pretrained(policy_dir), self.tokenizer,
                          configlib.judge_template(self.c), self.c.template.rationale_format,
                          tuple(self.c.template.labels), self.s.batch_size,
                          self.c.data.cutoff_len, self.s.max_new_tokens)

  def prove(self, prover_dir: str, items: list[dict], out: str) -> str:
    """π_ψ writes k sampled proofs per (pair, label); the best by the paper's Score is kept:
    -log π(z | s, l) / log π(z), high for proofs likely given the pair, unlikely alone.
    Journaled a batch of items at a time, so a preempted or killed run resumes mid-file."""
    generator = Generator(pretrained.load_pretrained(prover_dir), self.tokenizer,
                          self.s.batch_size, self.c.data.cutoff_len)
    template = configlib.prover_template(self.c)
    k = self.s.proofs_per_pair
    sampling = Sampling(temperature=self.s.proof_temperature)
    encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False)
    empty = encode(tok.render_user_turn(self.tokenizer, ""))

    def work(chunk: list[dict], first: int) -> list[dict]:
      prompts = [tok.render_user_turn(self.tokenizer, prover.templates.fill(
          template, i["prompt"], i["response_a"], i["response_b"], label=i["label"]))
          for i in chunk]
      candidates = [generator.generate(prompts, self.s.max_new_tokens, sampling,
                                       seed=self.c.seed + 7 * j, first_index=first)
                    for j in range(k)]
      best = [0] * len(chunk)
      if k > 1:
        proofs = [encode(g.text) + [self.tokenizer.eos_token_id] for gens in candidates
                  for g in gens]
        cond = generator.sequence_logprobs([encode(p) for p in prompts] * k, proofs)
        alone = generator.sequence_logprobs([empty] * len(proofs), proofs)
        score = (-cond / np.minimum(alone, -1e-9)).reshape(k, len(chunk))
        best = list(np.argmax(score, axis=0))
      return [{**item, "rationale": candidates[best[i]][i].text.strip() or "No rationale."}
              for i, item in enumerate(chunk)]

    log = Journal(out + ".journal", {"prover": prover_dir, "items": fingerprint(items),
                                     "k": k, "seed": self.c.seed, "sampling": str(sampling),
                                     "max_new_tokens": self.s.max_new_tokens})
    rows = run_in_chunks(items, work, log, self.s.batch_size)
    write_jsonl(rows, out)
    log.remove()
    return out

  def label_round(self, policy_dir: str, round_index: int) -> dict:
    """π_φ judges both orders; consistent, confident, well-formed judgments become labels.
    Judged a generation batch at a time into a journal, so preemption loses at most one."""
    unlabeled = self.files["unlabeled"]
    pool = records.read_records([unlabeled[(round_index - 1) % len(unlabeled)]],
                                records.parse_unlabeled_pair, self.c.data.on_bad_record)[0]
    judge = self.judge(policy_dir)
    sampling = Sampling(temperature=self.s.judge_temperature)

    def work(chunk: list, first: int) -> list[dict]:
      judged = judge.judge_batch([(p.prompt, p.response_a, p.response_b) for p in chunk],
                                 sampling, seed=self.c.seed + round_index, first_index=first)
      rows = []
      for pair, j in zip(chunk, judged):
        label = j.preferred
        well_formed = all(0 < len(r) <= self.s.max_rationale_chars for r in j.rationales)
        rows.append({"prompt": pair.prompt, "response_a": pair.response_a,
                     "response_b": pair.response_b, "gold": pair.extra.get("gold"),
                     "verdicts": list(j.verdicts), "score_a": j.score_a, "score_b": j.score_b,
                     "label": label, "confidence": max(j.score_a, j.score_b),
                     "keep": bool(label and well_formed and label == (
                         "A" if j.score_a > j.score_b else "B"))})
      return rows

    judged_path = self.path(f"round_{round_index}", "judged.jsonl")
    log = Journal(judged_path + ".journal", {
        "policy": policy_dir, "pool": fingerprint([vars(p) for p in pool]),
        "seed": self.c.seed + round_index, "sampling": str(sampling)})
    rows = run_in_chunks(pool, work, log, max(1, self.s.batch_size // 2))
    candidates = [r for r in rows if r["keep"]]
    if self.s.keep_top_fraction > 0:
      candidates.sort(key=lambda r: -r["confidence"])
      kept = candidates[:int(len(rows) * self.s.keep_top_fraction)]
    else:
      kept = [r for r in candidates if r["confidence"] >= self.s.confidence_threshold]
    write_jsonl(rows, judged_path)
    write_jsonl(kept, self.path(f"round_{round_index}", "kept.jsonl"))
    with_gold = [r for r in kept if r["gold"]]
    stats = {"judged": len(rows), "consistent": sum(r["label"] is not None for r in rows),
             "kept": len(kept), "kept_agree_gold": float(np.mean(
                 [r["label"] == r["gold"] for r in with_gold])) if with_gold else None}
    once(self.path(f"round_{round_index}", "labels.json"), lambda: stats)
    log.remove()  # only now: a kill before labels.json exists resumes from the journal
    return stats


def fingerprint(items: list[dict]) -> str:
  """What a journal's work is, in a few bytes: a hash of its inputs."""
  return f"{len(items)}:" + hashlib.sha256(
      json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def preference_file(job: SelfTraining, rounds: int) -> str:
  """Every kept pseudo-label so far as {prompt, chosen, rejected}, for verdict fine-tuning."""
  rows = []
  for r in range(1, rounds + 1):
    for line in open(job.path(f"round_{r}", "kept.jsonl"), encoding="utf-8"):
      row = json.loads(line)
      chosen, rejected = ((row["response_a"], row["response_b"]) if row["label"] == "A"
                          else (row["response_b"], row["response_a"]))
      rows.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
  return builtin_jsonl(job.path("final", "pseudo_labeled.jsonl"), lambda: rows)


def report_table(rows: list[dict]) -> str:
  lines = ["| stage | judged | kept | kept agree w/ gold | held-out accuracy |",
           "|---|---|---|---|---|"]
  fmt = lambda v: "-" if v is None else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))
  for row in rows:
    lines.append(f"| {row['stage']} | {fmt(row.get('judged'))} | {fmt(row.get('kept'))} | "
                 f"{fmt(row.get('kept_agree_gold'))} | {fmt(row['heldout_accuracy'])} |")
  return "\n".join(lines)


def run(c: ml_collections.ConfigDict) -> None:
  job = SelfTraining(c)
  prover_dir = job.train_prover()
  rows = []
  if c.self_train.baseline and job.heldout_triples:  # same labels, same step budget
    rows.append({"stage": "labeled-only fine-tuning", **once(
        job.path("baseline", "result.json"), lambda: {"heldout_accuracy": job.verdict_finetune(
            "baseline", job.files["labeled"], c.self_train.policy_steps)})})
  labeled_items = [{"prompt": p.prompt, "response_a": a, "response_b": b, "label": label}
                   for p in job.labeled
                   for a, b, label in ((p.chosen, p.rejected, "A"), (p.rejected, p.chosen, "B"))]
  proof_files = [job.path("round_0", "proofs.jsonl")]
  if not os.path.exists(proof_files[0]):
    job.prove(prover_dir, labeled_items, proof_files[0])
  policy = job.train_policy(0, proof_files)
  rows.append({"stage": "warm start", **once(job.path("round_0", "result.json"), lambda: {
      "heldout_accuracy": job.heldout_accuracy(policy)})})
  for r in range(1, c.self_train.rounds + 1):
    labels = job.path(f"round_{r}", "labels.json")
    stats = _read_json(labels) if os.path.exists(labels) else job.label_round(policy, r)
    kept_path = job.path(f"round_{r}", "kept.jsonl")
    proofs = job.path(f"round_{r}", "proofs.jsonl")
    if not os.path.exists(proofs):
      kept = [json.loads(l) for l in open(kept_path, encoding="utf-8")]
      job.prove(prover_dir, [{k: row[k] for k in ("prompt", "response_a", "response_b",
                                                   "label")} for row in kept], proofs)
    proof_files.append(proofs)
    policy = job.train_policy(r, proof_files)
    rows.append({"stage": f"round {r}", **stats, **once(
        job.path(f"round_{r}", "result.json"),
        lambda: {"heldout_accuracy": job.heldout_accuracy(policy)})})
  if c.self_train.final_finetune_steps:
    rows.append({"stage": "final label-smoothed fine-tuning", **once(
        job.path("final", "result.json"), lambda: {"heldout_accuracy": job.verdict_finetune(
            "final", job.files["labeled"] + [preference_file(job, c.self_train.rounds)],
            c.self_train.final_finetune_steps, start_from=policy)})})
  table = report_table(rows)
  if jax.process_index() == 0:
    with open(job.path("rounds.jsonl"), "w", encoding="utf-8") as f:
      f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(job.path("report.md"), "w", encoding="utf-8") as f:
      f.write(table + "\n")
  save_pretrained(pretrained.load_pretrained(policy), job.path("hf"), tokenizer=job.tokenizer)
  if jax.process_index() == 0:
    write_judge_card(job.path("hf"), configlib.judge_template(c), c.template.labels, Reasoning(
        c.template.rationale_format, c.self_train.max_new_tokens, c.self_train.judge_temperature))
  print(table)
  logging.info("final model exported to %s", job.path("hf"))
