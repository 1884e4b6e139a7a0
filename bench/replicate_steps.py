"""The replication recipe's steps (a gram_jax stage, the peer's training): each is cached
under its workdir by its inputs and settings, resumes where it stopped, records the code
version that ran it, and starts only while the run's time lasts (a device lease ends; a
step cut short resumes on the next call). And what a finished GRAM stage logged: its
learning curve and its speed."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from gram_jax import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE, STARTED, RUNS = ".replicate_done", ".replicate_started", ".replicate_code"
CACHED_ONLY = False  # --cached_only: report the finished steps, run none
DEADLINE: float | None = None  # time.monotonic() after which no step starts or runs on


class NotCached(Exception):
  """A step that did not finish: --cached_only would have to run it, or the time ran out."""


class StepFailed(Exception):
  """A step that exited with an error: the run reports it and goes on with the next row."""


def configure(cached_only: bool, time_budget_s: float) -> None:
  """--cached_only, and the seconds the run may take (0: no limit), read once by main."""
  global CACHED_ONLY, DEADLINE
  CACHED_ONLY = cached_only
  DEADLINE = time.monotonic() + time_budget_s if time_budget_s > 0 else None


def seconds_left() -> float | None:
  return None if DEADLINE is None else DEADLINE - time.monotonic()


def may_run(workdir: str) -> None:
  """Raises NotCached when the step in `workdir` may not start now."""
  if CACHED_ONLY:
    raise NotCached(workdir)
  left = seconds_left()
  if left is not None and left <= 0:
    raise NotCached(f"{workdir}: out of time")


def _read(path: str) -> str | None:
  return open(path, encoding="utf-8").read() if os.path.exists(path) else None


def fingerprint(arguments: list) -> str:
  """The arguments with the content of every file they name and the fingerprint of every
  finished step whose output they name: a changed input makes every later step stale. The
  code is not part of it (a run spans sessions and commits); `main_stage` records the code
  version that ran each step."""
  inputs = {}
  for argument in arguments:
    for path in str(argument).split("=", 1)[-1].split(","):
      if os.path.isfile(path):
        with open(path, "rb") as f:
          inputs[path] = hashlib.sha256(f.read()).hexdigest()
      for folder in (path, os.path.dirname(path)):
        if os.path.isdir(folder) and os.path.exists(os.path.join(folder, DONE)):
          inputs[path] = json.loads(_read(os.path.join(folder, DONE)))["key"]
  return json.dumps({"arguments": [str(a) for a in arguments], "inputs": inputs},
                    sort_keys=True)


def step_code(workdir: str) -> str:
  """The code version(s) that ran a cached step (a step resumed across commits ran on
  several)."""
  code = json.loads(_read(os.path.join(workdir, DONE)))["code"]
  return code if isinstance(code, str) else ", ".join(code)


def main_stage(config: str, workdir: str, *overrides: str) -> str:
  """One gram_jax stage through its CLI (`config`: a stage, or stage:preset). A workdir
  finished with the same command and inputs is reused, one started with them resumes
  (gram_jax resumes exactly, also after the time ran out and the stage was killed), any
  other starts afresh."""
  stage, _, preset = config.partition(":")
  command = [sys.executable, "-m", "gram_jax.main",
             f"--config={ROOT}/configs/{stage}.py" + (f":{preset}" if preset else ""),
             f"--config.workdir={workdir}", *overrides]
  key = fingerprint([config, *overrides])  # not the workdir: it holds the previous marker
  done = _read(os.path.join(workdir, DONE))
  if done and json.loads(done)["key"] == key:
    return workdir
  may_run(workdir)
  if _read(os.path.join(workdir, STARTED)) != key:
    shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, STARTED), "w", encoding="utf-8") as f:
    f.write(key)
  print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command[3:])}", flush=True)
  note_code(workdir)
  with open(os.path.join(workdir, "stage.log"), "a", encoding="utf-8") as log:
    try:
      result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              timeout=seconds_left())
    except subprocess.TimeoutExpired:
      raise NotCached(f"{workdir}: out of time, stopped (it resumes)") from None
  if result.returncode:
    raise StepFailed(f"{' '.join(command[3:])} exited with {result.returncode}; its log: "
                     f"{workdir}/stage.log")
  with open(os.path.join(workdir, DONE), "w", encoding="utf-8") as f:
    json.dump({"key": key, "code": noted_code(workdir)}, f)
  return workdir


def note_code(workdir: str) -> None:
  """Records the code version that runs a part of a step, read as the part starts (a step
  resumed across commits notes each)."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, RUNS), "a", encoding="utf-8") as f:
    f.write(provenance.current_code_version() + "\n")


def noted_code(workdir: str) -> list[str]:
  """The code versions `note_code` recorded in `workdir`, first to last, each once (none
  when it recorded nothing)."""
  text = _read(os.path.join(workdir, RUNS)) or ""
  return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def gram_pairs_per_second(workdir: str, pairs_per_step: int) -> float:
  """Trained pairs per second at the median step, the first (compilation) left out: a
  step's logged seconds also hold the learning-curve evaluation and checkpoint before it."""
  with open(os.path.join(workdir, "train_metrics.jsonl"), encoding="utf-8") as f:
    seconds = [json.loads(l)["step_seconds"] for l in f][1:]
  return pairs_per_step / float(np.median(seconds)) if seconds else float("nan")


def gram_curve(workdir: str) -> list[dict]:
  """The held-out learning curve a GRAM fine-tuning logged (eval_metrics.jsonl), each point
  after step 0 with the mean training loss of the 10 steps up to it (train_metrics.jsonl;
  a resumed step's last log counts)."""
  def logged(name: str) -> dict[int, dict]:
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
      return {}
    with open(path, encoding="utf-8") as f:
      return {int(e["step"]): e for e in map(json.loads, filter(str.strip, f))}
  points, train = logged("eval_metrics.jsonl"), logged("train_metrics.jsonl")
  curve = []
  for step in sorted(points):
    losses = [train[s]["loss"] for s in range(step - 9, step + 1) if s in train]
    curve.append({**points[step], **({"train_loss_before": float(np.mean(losses))}
                                     if step and losses else {})})
  return curve
