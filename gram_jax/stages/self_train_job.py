"""What every sub-step of GRAM-R² self-training shares (SelfTrainJob): the config, tokenizer
and data files, and the sub-steps themselves (prover and policy training, verdict fine-tuning,
proving, judging a round's pool, held-out measurement). Stage self_train wires them."""
import copy
import functools
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from gram_jax import checkpoint, pseudo_labels, storage
from gram_jax.config.model import attention_settings, compute_dtype
from gram_jax.config.template import chat_template, judge_template, prover_template
from gram_jax.config.train import rows_per_process
from gram_jax.data import preference, rationales, records
from gram_jax.inference import proving
from gram_jax.inference.generate import Generator, Sampling
from gram_jax.inference.reasoning import RationaleJudge
from gram_jax.inference.reward import RewardModel
from gram_jax.journal import Journal, fingerprint, run_in_chunks, write_jsonl
from gram_jax.progress import Progress
from gram_jax.stages import common, recipes
from gram_jax.stages.self_train_files import data_files, once, publish, read_jsonl

VERDICT_TEMPLATES = {"gram_rr": "gram", "compact_rr": "compact"}


def with_fields(c: ml_collections.ConfigDict,
                changes: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `c` with each dotted field of `changes` set (`c` itself is not touched)."""
  sub = copy.deepcopy(c)
  with sub.unlocked():
    for field, value in changes.items():
      *parents, name = field.split(".")
      node = sub
      for parent in parents:
        node = node[parent]
      node[name] = value
  return sub


def sub_run(c: ml_collections.ConfigDict, workdir: str, steps: int, learning_rate: float,
            changes: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The config of one sub-run of the job: its own workdir, steps and learning rate, the
  job's tokenizer, and the caller's other `changes`; every other field is the job's."""
  return with_fields(c, {"workdir": workdir, "train.num_steps": steps,
                         "train.learning_rate": learning_rate,
                         "tokenizer.path": os.path.join(c.workdir, checkpoint.TOKENIZER),
                         **(changes or {})})


def judged_figures(judged: list, correct: list[bool]) -> dict:
  """A judge's held-out figures: accuracy by its published readout (`correct`, per pair),
  by P(A)/P(B), and position consistency."""
  return {"accuracy": float(np.mean(correct)),
          "probability_accuracy": float(np.mean([j.score_a > j.score_b for j in judged])),
          "consistency": float(np.mean([j.consistent for j in judged]))}


class SelfTrainJob:
  """Holds what every sub-step shares: the config, tokenizer and file locations."""

  def __init__(self, c: ml_collections.ConfigDict):
    self.c, self.s = c, c.self_train
    self.labels = tuple(c.template.labels)
    self.tokenizer = common.load_or_build_tokenizer(c)
    self.files = data_files(c)
    read = lambda paths, parse: records.read_records(paths, parse, c.data.on_bad_record)[0]
    self.labeled = read(self.files["labeled"], preference.parse_preference_pair)
    self.task = read(self.files["task"], functools.partial(rationales.parse_task_pair,
                                                           labels=self.labels))
    if self.s.final_finetune_steps:
      pseudo_labels.check_task_set([t.pair for t in self.task], self.labeled)
    self.heldout = read(self.files["heldout"], preference.parse_preference_pair)
    self.heldout_triples = [(p.prompt, p.chosen, p.rejected) for p in self.heldout]
    validation = read(self.files["validation"], preference.parse_preference_pair)
    if self.s.export == "best_validation":
      pseudo_labels.check_validation_set(validation, self.heldout)
    self.validation_triples = [(p.prompt, p.chosen, p.rejected) for p in validation]
    self.chat_template = chat_template(c)

  def path(self, *parts: str) -> str:
    return os.path.join(self.c.workdir, *parts)

  def gold_file(self) -> str:
    """Every gold label the reasoning side uses (seed proofs' labels, labeled pairs, and the
    task pairs when it adapts to them) as preference pairs: the labeled-only baseline
    trains on exactly these."""
    def rows():
      parse = lambda row, where: rationales.parse_proved_pair(row, where, self.labels)
      seeds = records.read_records(self.files["seed"], parse, self.c.data.on_bad_record)[0]
      extra = [t.pair for t in self.task] if self.s.final_finetune_steps else []
      proved = [preference.preference_row(p.prompt, p.response_a, p.response_b, p.label,
                                          self.labels[0]) for p in seeds]
      return proved + [p.as_row() for p in self.labeled + extra]
    return common.builtin_jsonl(self.path("baseline", "gold_pairs.jsonl"), rows)

  def train_prover(self) -> str:
    sub = sub_run(self.c, self.path("prover"), self.s.prover_steps, self.s.learning_rate)
    recipes.train_on_proofs(sub, self.tokenizer, self.files["seed"],
                            recipes.prover_encoder(sub, self.tokenizer), sub.workdir)
    return sub.workdir

  def train_policy(self, name: str, proof_files: list[str], start_from: str = "",
                   min_steps: int | None = None) -> str:
    """π_φ on `proof_files`, from `start_from` (a run directory: round_steps at
    round_learning_rate) or from the base model (policy_steps at learning_rate), for at
    least policy_epochs epochs when starting from the base."""
    if start_from:
      steps = self.s.round_steps if min_steps is None else min_steps
      learning_rate = self.s.round_learning_rate or self.s.learning_rate
    else:
      rows = sum(len(read_jsonl(path)) for path in proof_files)
      per_step = rows_per_process(self.c) * jax.process_count() * \
          self.c.train.micro_batches
      steps = max(self.s.policy_steps, int(np.ceil(self.s.policy_epochs * rows / per_step)))
      learning_rate = self.s.learning_rate
    sub = sub_run(self.c, self.path(name, "policy"), steps, learning_rate,
                  {"model.path": start_from} if start_from else {})
    recipes.record_judge(sub, sub.workdir,
                         recipes.policy_reasoning(self.c, self.s.max_new_tokens))
    recipes.train_on_proofs(sub, self.tokenizer, proof_files,
                            recipes.policy_encoder(sub, self.tokenizer), sub.workdir,
                            generated=True)
    return sub.workdir

  def verdict_template(self) -> str:
    return judge_template(with_fields(self.c, {"template.judge": self.verdict_judge()}))

  def verdict_judge(self) -> str:
    """The verdict-only counterpart of the job's reasoning prompt (its baseline's prompt)."""
    return VERDICT_TEMPLATES.get(self.c.template.judge, self.c.template.judge)

  def verdict_finetune(self, name: str, train_files: list[str], steps: int,
                       start_from: str = "") -> dict:
    """GRAM label-smoothed verdict fine-tuning (stage finetune, no rationale) into
    workdir/name, from `start_from` (a run directory) or the base model."""
    sub = sub_run(self.c, self.path(name), steps, self.s.learning_rate, {
        "stage": "finetune", "template.judge": self.verdict_judge(),
        "data.cutoff_len": self.verdict_max_len(), "data.seq_len": self.verdict_max_len(),
        "data.train_files": ",".join(train_files), "eval.files": ",".join(self.files["heldout"]),
        "eval.every_steps": 0, **({"model.path": start_from} if start_from else {})})
    recipes.finetune_verdicts(sub, train_files, self.files["heldout"])
    if not self.heldout_triples:
      return {}
    return heldout_figures(self.measure_verdict_model(sub.workdir, self.heldout_triples))

  def verdict_max_len(self) -> int:
    return self.s.verdict_cutoff_len or self.c.data.cutoff_len

  def measure_verdict_model(self, model_dir: str, triples: list) -> dict:
    """Accuracy, P(A)/P(B) accuracy (the same readout) and position consistency of a verdict
    judge on (prompt, chosen, rejected) triples."""
    reward = RewardModel.from_pretrained(model_dir, max_len=self.verdict_max_len(),
                                         reasoning=None, template=self.verdict_template(),
                                         chat_template=self.chat_template,
                                         compute_dtype=compute_dtype(self.c),
                                         attention=attention_settings(self.c))
    judged = reward.judge_batch(triples)
    return judged_figures(judged, [j.score_a > j.score_b for j in judged])

  def policy_judge(self, policy_dir: str) -> RationaleJudge:
    """π_φ read with the prompt and chat template it was trained with."""
    return RationaleJudge(common.load_model(self.c, policy_dir), self.tokenizer,
                          judge_template(self.c, reasoning=True),
                          self.c.template.rationale_format, self.labels, self.s.batch_size,
                          self.c.data.cutoff_len, self.s.max_new_tokens, self.chat_template)

  def measure_policy(self, policy_dir: str, triples: list, desc: str, out: str) -> dict:
    """π_φ's accuracy on (prompt, chosen, rejected) triples read as the published numbers
    are (the parsed <answer> letters of one greedy judgment per order; a tie or no verdict is
    wrong), and of P(A)/P(B) after the rationale. Every judgment's reply goes to `out`, so
    what the model wrote can be read beside the figure."""
    judge = self.policy_judge(policy_dir)
    bar = Progress(len(triples), desc=desc, unit="pair", enabled=jax.process_index() == 0)
    judged = []
    for start in range(0, len(triples), self.s.batch_size):
      chunk = triples[start:start + self.s.batch_size]
      judged += judge.judge_batch(chunk, first_index=start)
      bar.update(len(chunk))
    bar.close()
    correct = [j.vote.winner == 0 for j in judged]
    publish(out, lambda: write_jsonl([
        {"prompt": t[0], "chosen": t[1], "rejected": t[2], "correct": ok,
         "judgments": [{"shown_first": "rejected" if j.swapped else "chosen",
                        "verdict": j.verdict, "reply": j.reply} for j in pair.judgments]}
        for t, pair, ok in zip(triples, judged, correct)], out))
    return judged_figures(judged, correct)

  def evaluate_policy(self, policy_dir: str, stage: str) -> dict:
    """Held-out figures of π_φ, its judgments in heldout.jsonl beside its run directory."""
    if not self.heldout_triples:
      return {}
    return heldout_figures(self.measure_policy(
        policy_dir, self.heldout_triples, f"{stage}: held-out judging",
        os.path.join(os.path.dirname(policy_dir), "heldout.jsonl")))

  def prove(self, prover_dir: str, items: list[dict], out: str, desc: str) -> str:
    """π_ψ writes k sampled proofs per (pair, label); the best by proof_score is kept
    (inference.proving). Prompts are cut by fields to data.cutoff_len and each row records
    whether its prompt was cut. Journaled a batch of items at a time, so a preempted or
    killed run resumes mid-file."""
    if storage.exists(out):
      return out
    generator = Generator(common.load_model(self.c, prover_dir), self.tokenizer,
                          self.s.batch_size, self.c.data.cutoff_len)
    chat = chat_template(self.c)
    prompts = proving.prover_prompts(self.tokenizer, prover_template(self.c),
                                     self.c.data.cutoff_len, chat)
    context = proving.empty_context(self.tokenizer, chat)
    sampling = Sampling(temperature=self.s.proof_temperature)

    work = functools.partial(proving.proved_rows, generator, prompts, k=self.s.proofs_per_pair,
                             max_new_tokens=self.s.max_new_tokens, sampling=sampling,
                             seed=self.c.seed, context=context)

    log = Journal(out + ".journal", {"prover": prover_dir, "items": fingerprint(items),
                                     "k": self.s.proofs_per_pair, "seed": self.c.seed,
                                     "sampling": str(sampling), "cutoff": self.c.data.cutoff_len,
                                     "max_new_tokens": self.s.max_new_tokens})
    rows = run_in_chunks(items, work, log, self.s.batch_size, desc=desc, unit="proof")
    publish(out, lambda: write_jsonl(rows, out))
    log.remove()
    return out

  def label_round(self, policy_dir: str, round_index: int) -> dict:
    """π_φ judges each pair k times per order (sampled); rule-passing judgments vote; the
    majority is the pseudo-label unless tied, split or unconfident. Judged a generation
    batch at a time into a journal, so preemption loses at most one batch."""
    unlabeled = self.files["unlabeled"]
    pool = records.read_records([unlabeled[(round_index - 1) % len(unlabeled)]],
                                preference.parse_unlabeled, self.c.data.on_bad_record)[0]
    judge = self.policy_judge(policy_dir)
    sampling = Sampling(temperature=self.s.judge_temperature)
    by_fraction = self.s.keep_top_fraction > 0
    min_confidence = 0.0 if by_fraction else self.s.confidence_threshold

    rules = pseudo_labels.LabelRules(self.labels, self.c.template.rationale_format,
                       self.s.max_rationale_chars, self.s.min_vote_share, min_confidence)
    work = functools.partial(label_pairs, judge, sampling=sampling,
                             seed=self.c.seed + round_index, samples=self.s.judge_samples,
                             rules=rules)

    judged_path = self.path(f"round_{round_index}", "judged.jsonl")
    log = Journal(judged_path + ".journal", {
        "policy": policy_dir, "pool": fingerprint([vars(p) for p in pool]),
        "seed": self.c.seed + round_index, "sampling": str(sampling),
        "samples": self.s.judge_samples, "min_vote_share": self.s.min_vote_share,
        "min_confidence": min_confidence})
    rows = run_in_chunks(pool, work, log, max(1, self.s.batch_size // (
        2 * self.s.judge_samples)), desc=f"round {round_index}: judging the unlabeled pool",
                         unit="pair")
    if by_fraction:
      rows = pseudo_labels.keep_top_fraction(rows, self.s.keep_top_fraction)
    kept = [r for r in rows if r["drop_reason"] is None]
    kept_path = self.path(f"round_{round_index}", "kept.jsonl")

    def write_round() -> None:
      write_jsonl(rows, judged_path)
      write_jsonl(kept, kept_path)
    publish(kept_path, write_round)
    stats = once(self.path(f"round_{round_index}", "labels.json"),
                 lambda: pseudo_labels.round_stats(rows))
    log.remove()  # only now: a kill before labels.json exists resumes from the journal
    return stats


def label_pairs(judge: RationaleJudge, pairs: list[records.UnlabeledPair], first: int,
                sampling: Sampling, seed: int, samples: int,
                rules: pseudo_labels.LabelRules) -> list[dict]:
  """One chunk of a round's pool (items `first`, `first` + 1, …): judged `samples` times per
  order, then each pair's row with its pseudo-label or drop reason."""
  judged = judge.judge_batch([(p.prompt, p.response_a, p.response_b) for p in pairs],
                             sampling, seed=seed, first_index=first, samples=samples)
  return [pseudo_labels.judged_row(pair, j, rules) for pair, j in zip(pairs, judged)]


def heldout_figures(figures: dict) -> dict:
  return {f"heldout_{name}": value for name, value in figures.items()}


