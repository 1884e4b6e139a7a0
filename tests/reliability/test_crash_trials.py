"""Seeded SIGKILL trials: a run is killed at random points — inside a training step, inside an
async checkpoint save, while appending generated JSONL — and resumed, again and again.

After every kill the state on disk is checked: the latest checkpoint restores and equals the
unbroken run's state at that step; the journal yields only whole, correct rows (a torn last
line is never read as data). Each chain ends with a run to completion whose weights and file
match the unbroken run byte for byte. The same trials run with the run directory on gs:// (a
GCS emulator): there, Orbax commits a step with a marker object and the journal is one object
per chunk. A third set kills LoRA runs, whose checkpoints hold the adapters alone.
"""
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from gram_jax import storage
from gram_jax.config.model import lora_spec
from gram_jax.checkpoint import RunCheckpointer
from gram_jax.journal import Journal
from gram_jax.models.decoder import abstract_model
from gram_jax.stages import common
from tests.helpers import cli, crash_worker, train_fixtures

CHAINS = 2  # in parallel
# 20 kills of live local runs, 10 on gs://, 10 of local LoRA runs
KILLS_PER_CHAIN = {"local": 10, "gs": 5, "lora": 5}


def _env(cache: str) -> dict:
  return {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": cli.ROOT,
          "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _worker(workdir: str, env: dict, variant: str) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "tests.helpers.crash_worker", workdir, variant],
                          cwd=cli.ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)


def _reference_states(variant: str):
  """Params (with LoRA: adapters) after every step of the unbroken run, and the restore
  target."""
  c, mesh, model_config, batches = crash_worker.trial_run(lora=variant == "lora")
  trainer, _, _ = train_fixtures.make_trainer(mesh, model_config, crash_worker.STEPS, c,
                                              lora_spec(c))
  state = trainer.init_state(common.initial_params(c, model_config, mesh), c.seed)
  step, params = trainer.compile_step(), {}
  for n in range(1, crash_worker.STEPS + 1):
    state, _ = step(state, trainer.put_batch(next(batches)))
    params[n] = jax.device_get(state["params"])
  _, abstract = abstract_model(model_config)
  return params, trainer.abstract_state(nnx.to_pure_dict(abstract))


def _check_state(workdir: str, params: dict, target) -> dict:
  """What the kill left, and whether it is a valid state to resume from."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  names = storage.listdir(ckpt_dir) if storage.isdir(ckpt_dir) else []
  if storage.is_remote(workdir):  # a step without its commit marker
    torn_save = any(n.isdigit() and not storage.isfile(os.path.join(
        ckpt_dir, n, "commit_success.txt")) for n in names)
  else:  # a step still in its temporary directory
    torn_save = any("tmp" in n for n in names)
  journal = os.path.join(workdir, "generated.jsonl.journal")
  data = storage.read_bytes(journal) if storage.isfile(journal) else b""
  torn_line = bool(data) and not data.endswith(b"\n")
  latest = None
  if names:
    checkpointer = RunCheckpointer.reader(ckpt_dir)
    latest = checkpointer.latest_step()
    if latest is not None:  # the latest checkpoint restores, and is the unbroken run's state
      restored, meta = checkpointer.restore(latest, target)
      assert meta["step"] == latest
      for a, b in zip(jax.tree.leaves(jax.device_get(restored["params"])),
                      jax.tree.leaves(params[latest])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    checkpointer.close()
  rows = Journal(journal, {"items": crash_worker.ITEMS}).read()
  assert rows == [crash_worker.expected_row(i) for i in range(len(rows))]
  return {"latest_step": latest, "journal_rows": len(rows), "torn_save": torn_save,
          "torn_line": torn_line}


def _trained(workdir: str) -> bool:
  metrics = os.path.join(workdir, "train_metrics.jsonl")
  return cli.jsonl_lines(metrics) > 0 and storage.isdir(os.path.join(
      workdir, "checkpoints", str(crash_worker.STEPS)))


def _chain(seed: int, workdir: str, env: dict, variant: str, params: dict, target,
           phase_seconds: dict, kills: int) -> list[dict]:
  """Kills live runs at seeded random points until KILLS_PER_CHAIN landed, checking the state
  after each; a run that ends before its kill is checked too, then started afresh."""
  rng = random.Random(seed)
  metrics = os.path.join(workdir, "train_metrics.jsonl")
  trials, lives = [], 0
  while sum(not t["finished"] for t in trials) < kills:
    lives += 1
    assert lives <= 3 * kills, trials
    phase = rng.choice(("train", "generate"))
    if phase == "train" and _trained(workdir):
      storage.rmtree(workdir)  # training is over in this run: start a fresh one
    process = _worker(workdir, env, variant)
    resume = process.stdout.readline().split()  # resume step=S rows=R
    step, rows = (int(v.split("=")[1]) if v.split("=")[1] != "None" else 0 for v in resume[1:])
    left = {"train": crash_worker.STEPS - step, "generate": crash_worker.ITEMS - rows}
    delay = rng.uniform(0, phase_seconds[phase] * max(left[phase], 1))
    finished = True
    for line in process.stdout:
      if line.strip() == phase:
        if phase == "train":  # once this life's first step is done: steps and saves run
          logged = cli.jsonl_lines(metrics)
          cli.wait_for(lambda: cli.jsonl_lines(metrics) > logged, [process])
        time.sleep(delay)
        finished = process.poll() is not None
        process.kill()
        break
    process.wait()
    trials.append({"seed": seed, "phase": phase, "delay": round(delay, 3),
                   "finished": finished, **_check_state(workdir, params, target)})
    if finished:
      storage.rmtree(workdir)
  final = _worker(workdir, env, variant)
  lines = final.communicate(timeout=300)[0].splitlines()
  assert final.returncode == 0, lines[-5:]
  trials.append({"final": json.loads(lines[-1][len("done "):])})
  return trials


@pytest.mark.parametrize("where", ["local", "gs", "lora"])
def test_sigkill_at_random_points_always_leaves_a_resumable_state(where, tmp_path, request):
  root = request.getfixturevalue("gcs").bucket() if where == "gs" else str(tmp_path)
  env = _env(str(tmp_path / "jax_cache"))
  variant = "lora" if where == "lora" else ""
  params, target = _reference_states(variant)
  started = time.time()
  unbroken = _worker(str(tmp_path / "unbroken"), env, variant)  # fills the compilation cache, times
  marks, reference = {}, None
  for line in unbroken.stdout:
    marks[line.split()[0]] = time.time() - started
    if line.startswith("done "):
      reference = json.loads(line[len("done "):])
  assert unbroken.wait() == 0 and reference
  step_seconds = [json.loads(l)["step_seconds"] for l in open(
      tmp_path / "unbroken" / "train_metrics.jsonl")][1:]
  phase_seconds = {"train": float(np.median(step_seconds)),  # per step / per item
                   "generate": (marks["done"] - marks["generate"]) / crash_worker.ITEMS}
  with concurrent.futures.ThreadPoolExecutor(CHAINS) as pool:
    chains = list(pool.map(lambda i: _chain(1000 + i, os.path.join(root, f"chain{i}"), env,
                                            variant, params, target, phase_seconds,
                                            KILLS_PER_CHAIN[where]), range(CHAINS)))
  finals = [chain[-1]["final"] for chain in chains]
  trials = [t for chain in chains for t in chain[:-1]]
  summary = {"trials": len(trials), "killed_live": sum(not t["finished"] for t in trials),
             "torn_saves": sum(t["torn_save"] for t in trials),
             "torn_lines": sum(t["torn_line"] for t in trials),
             "killed_in_training": sum(t["phase"] == "train" for t in trials),
             "killed_in_generation": sum(t["phase"] == "generate" for t in trials)}
  print(f"crash trials ({where}):", json.dumps(summary))
  assert finals == [reference] * CHAINS  # every chain ends with the unbroken run's bytes
  assert summary["killed_live"] == KILLS_PER_CHAIN[where] * CHAINS
  assert summary["torn_saves"] >= (where == "local")  # kills did land inside async saves
