"""Stage `evaluate`: score benchmark files as published and report with the official rules.

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

from gram_jax import benchmarks, configlib, parallel
from gram_jax.data import preference, sources
from gram_jax.errors import GramError
from gram_jax.journal import Journal, run_in_chunks, write_atomic
from gram_jax.reward import RewardModel


def detect_benchmark(rows: list[dict], setting: str) -> str:
  if setting != "auto":
    return setting
  first = rows[0] if rows else {}
  if isinstance(first.get("chosen"), list) and first["chosen"] and isinstance(
      first["chosen"][0], str):
    return "rmbench"
  if "source" in first:
    return "judgebench"
  if first.get("subset") in benchmarks.REWARDBENCH_SUBSETS:
    return "rewardbench"
  return "pairs"


def rmbench_domain(row: dict, path: str) -> str:
  if isinstance(row.get("domain"), str):
    return row["domain"]
  name = os.path.basename(path).lower()
  for domain in benchmarks.RMBENCH_DOMAINS:
    if domain in name or str(row.get("id", "")).lower().startswith(domain):
      return domain
  return "unknown"


def read_rows(path: str) -> list[tuple[str, dict]]:
  rows = []
  for row in sources.iter_rows(path):
    if isinstance(row.data, GramError):
      raise row.data
    rows.append((row.where, row.data))
  if not rows:
    raise GramError(f"{path}: no records")
  return rows


def _rmbench_triples(where: str, row: dict) -> list[tuple[str, str, str]]:
  chosen, rejected = row.get("chosen"), row.get("rejected")
  for field, value in (("chosen", chosen), ("rejected", rejected)):
    if not (isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, str) and v.strip() for v in value)):
      raise GramError(f"{where}: field '{field}': expected 3 non-empty response strings")
  if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
    raise GramError(f"{where}: field 'prompt': missing or empty")
  return [(row["prompt"], chosen[i], rejected[j]) for i in range(3) for j in range(3)]


def score_journaled(reward: RewardModel, triples: list[tuple[str, str, str]],
                    log: Journal) -> tuple[np.ndarray, int]:
  """Scores in chunks through a journal: a preempted or killed evaluation resumes there."""
  def work(chunk: list, first: int) -> list[dict]:
    scores, trimmed = reward.score_pairs(chunk)
    return [{"a": float(a), "b": float(b), "trimmed": bool(t)}
            for (a, b), t in zip(scores, trimmed)]
  rows = run_in_chunks(triples, work, log, reward.batch_size * 8,
                       desc=os.path.basename(log.path))
  return (np.array([[r["a"], r["b"]] for r in rows], np.float32).reshape(-1, 2),
          sum(r["trimmed"] for r in rows))


def evaluate_file(reward: RewardModel, path: str, setting: str, out_dir: str,
                  work: dict[str, Any]) -> dict[str, Any]:
  """Scores one file into out_dir; a file already finished for the same `work` (model,
  template, file) is not scored again."""
  work = {**work, **file_identity(path)}
  done = os.path.join(out_dir, "summary.json")
  if os.path.exists(done):
    with open(done, encoding="utf-8") as f:
      summary = json.load(f)
    if summary.get("work") == work:
      logging.info("%s: already evaluated in %s", path, out_dir)
      return summary
  rows = read_rows(path)
  kind = detect_benchmark([r for _, r in rows], setting)
  log = Journal(os.path.join(out_dir, "scores.journal"), work)
  results = []
  if kind == "rmbench":
    triples = [t for where, row in rows for t in _rmbench_triples(where, row)]
    flat, trimmed = score_journaled(reward, triples, log)
    scores = flat.reshape(len(rows), 3, 3, 2)
    matrices = []
    for (_, row), item in zip(rows, scores):
      wins = item[..., 0] > item[..., 1]
      matrices.append((rmbench_domain(row, path), wins))
      results.append({**row, "score_chosen": item[..., 0].tolist(),
                      "score_rejected": item[..., 1].tolist(), "correct": wins.tolist(),
                      **benchmarks.rmbench_item_accuracy(wins)})
    summary = benchmarks.rmbench_summary(matrices)
  else:
    pairs = [preference.parse_preference_pair(row, where) for where, row in rows]
    scores, trimmed = score_journaled(reward, [(p.prompt, p.chosen, p.rejected)
                                               for p in pairs], log)
    correct = scores[:, 0] > scores[:, 1]
    for (_, row), (chosen, rejected), ok in zip(rows, scores, correct):
      results.append({**row, "score_chosen": float(chosen), "score_rejected": float(rejected),
                      "correct": bool(ok)})
    if kind == "rewardbench":
      summary = benchmarks.rewardbench_summary(
          (str(r.get("subset", "")), ok) for (_, r), ok in zip(rows, correct))
    elif kind == "judgebench":
      summary = benchmarks.judgebench_summary(
          (str(r.get("source", "")), ok) for (_, r), ok in zip(rows, correct))
    else:
      summary = benchmarks.pairs_summary(correct)
  summary.update(trimmed_pairs=trimmed, file=path, work=work)
  if jax.process_index() == 0:
    write_outputs(out_dir, results, summary, benchmarks.markdown(os.path.basename(path),
                                                                 summary, trimmed))
  log.remove()
  return summary


def file_identity(path: str) -> dict[str, Any]:
  """A local file's size and modification time, so an edited file is evaluated again."""
  if not os.path.isfile(path):
    return {"file": path}
  stat = os.stat(path)
  return {"file": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_outputs(out_dir: str, results: list[dict], summary: dict, report: str) -> None:
  """summary.json, written last, marks the file done; each file is renamed into place whole."""
  write_atomic(os.path.join(out_dir, "results.jsonl"),
               "".join(json.dumps(r, default=_json_default) + "\n" for r in results))
  write_atomic(os.path.join(out_dir, "report.md"), report)
  write_atomic(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run(c: ml_collections.ConfigDict) -> None:
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  dtype = configlib.compute_dtype(c)
  reward = RewardModel.from_pretrained(
      c.model.path, mesh=mesh, compute_dtype=dtype, max_len=c.eval.max_len,
      batch_size=c.eval.batch_size, template=configlib.judge_template(c),
      labels=tuple(c.template.labels), chat_template=c.tokenizer.chat_template or None,
      prefer_card=True)
  work = {"model": os.path.abspath(c.model.path), "max_len": c.eval.max_len,
          "template": hashlib.sha256(reward.encoder.template.encode()).hexdigest()[:16],
          "labels": list(reward.labels), "benchmark": c.eval.benchmark,
          "reasoning": str(reward.reasoning)}
  reports = []
  for path in configlib.data_files(c.eval.files):
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0].replace(".json", "")
    summary = evaluate_file(reward, path, c.eval.benchmark, os.path.join(c.workdir, stem),
                            work)
    logging.info("%s: %s", path, json.dumps({k: v for k, v in summary.items()
                                             if k in ("overall", "accuracy", "groups")}))
    reports.append(benchmarks.markdown(os.path.basename(path), summary,
                                       summary["trimmed_pairs"]))
  if jax.process_index() == 0:
    write_atomic(os.path.join(c.workdir, "report.md"), "\n".join(reports))
    print("\n".join(reports))
