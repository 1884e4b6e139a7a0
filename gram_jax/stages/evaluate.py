"""Stage `evaluate`: judge benchmark files as published (data/benchmarks says how each is
judged, grouped and reported), journal the judgments so a stopped run resumes, and write.

For every file in eval.files it writes, under workdir/<file stem>/: results.jsonl (each
record's original fields plus score_chosen / score_rejected / correct; RM-Bench records get
the 3x3 score matrices), summary.json, and report.md; workdir/report.md joins all files.
"""
import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gram_jax import pretrained, storage
from gram_jax.config.data import named_files
from gram_jax.config.mesh import device_mesh
from gram_jax.data import benchmarks, sources
from gram_jax.errors import GramError
from gram_jax.inference.reasoning import PairJudgment
from gram_jax.inference.reward import RewardModel
from gram_jax.journal import Journal, fingerprint, run_in_chunks
from gram_jax.stages import common


def read_rows(path: str) -> list[tuple[str, dict]]:
  rows = sources.parse_rows(path, lambda data, where: (where, data))
  if not rows:
    raise GramError(f"{path}: no records")
  return rows


def pair_outcome(reward: RewardModel, judged: PairJudgment) -> dict[str, Any]:
  """One (prompt, chosen, rejected) pair's scores and readouts, for results and summaries;
  a reasoning judge's replies are kept so a user can read what it wrote."""
  (chosen, rejected), = reward.scores_of([judged])
  row = {"a": float(chosen), "b": float(rejected), "trimmed": judged.trimmed,
         "consistent": judged.consistent}
  if judged.judgments:  # the first slot's label probability over the orders judged: 0.5
    # without a slot preference (position_bias.order_readout's p_first_slot, per pair)
    row["p_first_slot"] = float(np.mean([j.probs[0] for j in judged.judgments]))
  if reward.reasoning is not None:
    vote = judged.vote
    row.update(votes=reward.reasoning.votes, orders=reward.reasoning.orders,
               for_chosen=vote.for_a, for_rejected=vote.for_b, no_verdict=vote.abstained,
               judgments=len(judged.judgments), tied=vote.valid > 0 and vote.winner is None,
               verdict_correct=judged.first_vote.winner == 0,
               voting_correct=judged.winner == 0,
               probability_correct=judged.score_a > judged.score_b,
               replies=[{"shown_first": "rejected" if j.swapped else "chosen",
                         "verdict": j.verdict, "reply": j.reply} for j in judged.judgments])
  return row


def chosen_shown_first(triple: tuple[str, str, str], given: bool | None = None) -> bool:
  """Where a one-order judge sees the chosen response: the file's own A/B order when it
  has one (JudgeBench), else first for a fixed half of the pairs (a hash of their text), so
  a judge that always answers A scores 50 %, not 100 %."""
  if given is not None:
    return given
  return hashlib.sha256("\x00".join(triple).encode()).digest()[0] % 2 == 0


def judge_journaled(reward: RewardModel, triples: list[tuple[str, str, str]], log: Journal,
                    given_orders: list[bool | None] | None = None,
                    desc: str = "") -> list[dict[str, Any]]:
  """Judges (prompt, chosen, rejected) triples in chunks through a journal: a preempted or
  killed evaluation resumes there. A reasoning judge's samples depend on (seed, pair index)
  only, not on the chunking; a chunk is one device batch of pairs, so progress (`desc`, with
  an ETA) shows as they finish. A one-order judge (the release protocol) sees each pair in the
  order `chosen_shown_first` gives; its verdicts are mapped back to chosen/rejected."""
  one_order = reward.reasoning is not None and reward.reasoning.orders == 1
  given_orders = given_orders or [None] * len(triples)
  firsts = [chosen_shown_first(t, g) for t, g in zip(triples, given_orders)]

  def work(chunk: list, first: int) -> list[dict]:
    shown_first = firsts[first:first + len(chunk)] if one_order else [True] * len(chunk)
    shown = [t if f else (t[0], t[2], t[1]) for t, f in zip(chunk, shown_first)]
    judged = reward.judge_batch(shown, first_index=first)
    return [pair_outcome(reward, j if f else j.flipped()) for j, f in zip(judged, shown_first)]
  return run_in_chunks(triples, work, log, reward.batch_size, desc=desc or log.path,
                       unit="pair")


def evaluate_file(reward: RewardModel, path: str, setting: str, out_dir: str,
                  work: dict[str, Any], max_records: int = 0, sample: str = "first",
                  seed: int = 0) -> dict[str, Any]:
  """Scores one file (or `benchmarks.select_records`' share of it) into out_dir; a file already finished
  for the same `work` (model, template, file, selection) is not scored again."""
  work = {**work, **file_identity(path), "max_records": max_records, "sample": sample,
          "seed": seed}
  done = os.path.join(out_dir, "summary.json")
  if storage.exists(done):
    summary = json.loads(storage.read_text(done))
    if summary.get("work") == work:
      logging.info("%s: already evaluated in %s", path, out_dir)
      return summary
  all_rows = read_rows(path)
  benchmark = benchmarks.detect([r for _, r in all_rows], setting, path)
  rows, selection = benchmarks.select_records(all_rows, max_records, sample, seed)
  log = Journal(os.path.join(out_dir, "scores.journal"), work)
  desc = f"{benchmark.title} {path}"
  results, summary, outcomes = benchmark.score(
      lambda triples, given: judge_journaled(reward, triples, log, given, desc), rows, path)
  trimmed = sum(o["trimmed"] for o in outcomes)
  summary.update(benchmarks.readout_summary(outcomes), trimmed_pairs=trimmed, file=path,
                 judge=reward.describe(), max_len=reward.max_len, work=work)
  if selection:
    summary["sample"] = selection
  if jax.process_index() == 0:
    write_outputs(out_dir, results, summary, benchmarks.markdown(path, summary))
  log.remove()
  return summary


def file_identity(path: str) -> dict[str, Any]:
  """A file's (or a folder's files') sizes and versions (modification time, object
  generation), so an edited file is evaluated again."""
  if not storage.exists(path):
    return {"file": path}
  names = sources.folder_files(path) if storage.isdir(path) else [path]
  versions = [storage.version(name) for name in names]
  return {"file": storage.absolute(path), "size": sum(size for size, _ in versions),
          "version": fingerprint([{"v": v} for _, v in versions]), "files": len(names)}


def write_outputs(out_dir: str, results: list[dict], summary: dict, report: str) -> None:
  """summary.json, written last, marks the file done; each file is renamed into place whole."""
  storage.write_atomic(os.path.join(out_dir, "results.jsonl"),
                       "".join(json.dumps(r, default=_json_default) + "\n" for r in results))
  storage.write_atomic(os.path.join(out_dir, "report.md"), report)
  storage.write_atomic(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def output_names(paths: list[str]) -> list[str]:
  """A folder name per file: its stem, with parent folders prepended while stems collide
  (LLMBar's subsets are all called dataset.json)."""
  parts = [path.rstrip("/").replace(".jsonl", "").replace(".json", "").replace(".gz", "")
           .replace(".parquet", "").split("/") for path in paths]
  depth = 1
  while True:
    names = ["_".join(p[-depth:]) for p in parts]
    if len(set(names)) == len(names) or depth >= max(map(len, parts)):
      return names
    depth += 1


def run(c: ml_collections.ConfigDict) -> None:
  mesh = device_mesh(c)
  weights = pretrained.weights_version(c.model.path)  # read before the weights are
  reward = common.reward_model(c, mesh, c.eval.max_len, c.eval.batch_size)
  digest = lambda text: hashlib.sha256((text or "").encode()).hexdigest()[:16]
  work = {"model": storage.absolute(c.model.path), "weights": weights, "max_len": reward.max_len,
          "template": digest(reward.encoder.template), "labels": list(reward.labels),
          "chat_template": digest(reward.encoder.chat_template), "benchmark": c.eval.benchmark,
          "reasoning": str(reward.reasoning)}
  reports = []
  files = named_files(c.eval.files)
  for path, name in zip(files, output_names(files)):
    summary = evaluate_file(reward, path, c.eval.benchmark, os.path.join(c.workdir, name),
                            work, c.eval.max_pairs, c.eval.sample, c.seed)
    logging.info("%s: %s", path, json.dumps({k: v for k, v in summary.items() if k in (
        "overall", "accuracy", "micro", "macro", "groups", "position_consistency")}))
    reports.append(benchmarks.markdown(path, summary))
  if jax.process_index() == 0:
    report = "\n".join([f"Judge {c.model.path}: {reward.describe()}.", ""] + reports)
    storage.write_atomic(os.path.join(c.workdir, "report.md"), report)
    print(report)
