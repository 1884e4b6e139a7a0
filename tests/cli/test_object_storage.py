"""Runs on gs:// (a GCS emulator on loopback, tests/helpers/gcs.py), as on a TPU pod: every
file a run writes lands in the bucket, a SIGKILLed run resumes from it exactly, two
processes write one shared checkpoint, and models and data load straight from it."""
import json
import os
import signal
import socket
import subprocess
import sys

import fsspec
import jax
import numpy as np
from flax import nnx

import gram_jax
from gram_jax import storage
from gram_jax.data import synthetic
from gram_jax.journal import write_jsonl
from gram_jax.training.metrics import read_jsonl_metrics
from tests.helpers import cli

PRETRAIN = "configs/pretrain.py"
FLAGS = ("--config.train.num_steps=24", "--config.checkpoint.every_steps=3",
         "--config.data.builtin_pairs=300")


def _losses(workdir: str) -> dict[int, float]:
  return {step: e["loss"] for step, e in read_jsonl_metrics(
      os.path.join(workdir, "train_metrics.jsonl")).items()}


def _committed_steps(emulator, run: str) -> list[int]:
  names = emulator.objects(f"{run}/checkpoints/")
  return sorted(int(n.split("/")[-2]) for n in names if n.endswith("/commit_success.txt")
                and n.split("/")[-2].isdigit())


def _params(model) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(nnx.state(model, nnx.Param)))]


def test_pretrain_on_gs_resumes_exactly_after_sigkill_and_exports_to_the_bucket(gcs, tmp_path):
  reference = str(tmp_path / "reference")
  result = cli.run_main(PRETRAIN, f"--config.workdir={reference}", *FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  bucket = gcs.bucket()
  run = f"{bucket}/runs/pretrain"
  process = subprocess.Popen(cli.main_command(PRETRAIN, f"--config.workdir={run}", *FLAGS),
                             cwd=tmp_path, env=cli.main_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  cli.wait_for(lambda: bool(_committed_steps(gcs, run)), [process])
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = max(_committed_steps(gcs, run))
  assert killed_at < 24
  result = subprocess.run(cli.main_command(PRETRAIN, f"--config.workdir={run}", *FLAGS),
                          cwd=tmp_path, env=cli.main_env(), capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  expected, resumed = _losses(reference), _losses(run)
  assert sorted(resumed) == sorted(expected) == list(range(1, 25))
  np.testing.assert_allclose([resumed[s] for s in range(1, 25)],
                             [expected[s] for s in range(1, 25)], rtol=1e-6)
  names = gcs.objects(f"{run}/")
  prefix = run[len("gs://"):].split("/", 1)[1]
  for name in ("model_config.json", "config.json", "tokenizer/tokenizer.json",
               "train_metrics.jsonl", "checkpoints/24/commit_success.txt"):
    assert f"{prefix}/{name}" in names, name
  assert any(n.startswith(f"{prefix}/tensorboard/train/events.out.tfevents") for n in names)
  assert not any(name.startswith("gs") for name in os.listdir(tmp_path))  # no local 'gs:'

  export = f"{bucket}/export/hf"
  convert = subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--src={run}",
                            f"--dst={export}", "--to=hf"], cwd=tmp_path, env=cli.main_env(),
                           capture_output=True, text=True, timeout=300)
  assert convert.returncode == 0, convert.stderr[-2000:]
  assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(storage.listdir(export))
  # Streamed from the bucket (safetensors and Orbax) = the unbroken local run, bit for bit.
  local = _params(gram_jax.load_pretrained(reference))
  for source in (export, run):
    for x, y in zip(_params(gram_jax.load_pretrained(source)), local):
      np.testing.assert_array_equal(x, y)

  pairs = f"{bucket}/data/pairs.jsonl"
  write_jsonl([{k: p[k] for k in ("prompt", "chosen", "rejected")}
               for p in synthetic.make_pairs(8, seed=7)], pairs)
  evaluate = f"{bucket}/runs/evaluate"
  result = subprocess.run(cli.main_command(
      "configs/evaluate.py", f"--config.model.path={export}", f"--config.eval.files={pairs}",
      f"--config.workdir={evaluate}", "--config.eval.max_len=256"), cwd=tmp_path,
      env=cli.main_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(storage.read_text(f"{evaluate}/pairs/summary.json"))
  assert summary["pairs"] == 8 and summary["work"]["model"] == export
  assert storage.isfile(f"{evaluate}/report.md")
  downloaded = str(tmp_path / "downloaded")
  fsspec.filesystem("gs").get(export + "/", downloaded, recursive=True)
  remote = gram_jax.RewardModel.from_pretrained(export, max_len=256)
  copied = gram_jax.RewardModel.from_pretrained(downloaded, max_len=256)
  item = synthetic.make_pairs(1, seed=8)[0]
  assert remote.score(item["prompt"], item["chosen"], item["rejected"]) == copied.score(
      item["prompt"], item["chosen"], item["rejected"])


def test_a_missing_bucket_is_one_error_before_any_work(gcs, tmp_path):
  missing = "gs://no-such-bucket-here/run"
  result = subprocess.run(cli.main_command(PRETRAIN, f"--config.workdir={missing}", *FLAGS),
                          cwd=tmp_path, env=cli.main_env(), capture_output=True, text=True,
                          timeout=300)
  assert cli.error_line(result) == (
      f"error: config.workdir: {missing}: bucket gs://no-such-bucket-here does not exist or "
      "these credentials cannot see it")
  assert os.listdir(tmp_path) == []


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_two_processes_write_one_shared_checkpoint_in_the_bucket(gcs, tmp_path):
  run = f"{gcs.bucket()}/runs/two_hosts"
  port = _free_port()
  env = {**cli.main_env(), "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
  processes = [subprocess.Popen(cli.main_command(
      PRETRAIN, f"--config.workdir={run}", "--config.train.num_steps=4",
      "--config.checkpoint.every_steps=2", "--config.data.builtin_pairs=100",
      f"--config.distributed.coordinator_address=127.0.0.1:{port}",
      "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  errors = [p.communicate(timeout=600)[1] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], [e[-2000:] for e in errors]
  prefix = run[len("gs://"):].split("/", 1)[1]
  names = gcs.objects(f"{run}/checkpoints/4/params/")
  # Parameters are sharded over both hosts (fsdp): each wrote its own shards, into one step.
  assert {n.split("/")[5] for n in names if "/ocdbt.process_" in n} == {
      "ocdbt.process_0", "ocdbt.process_1"}
  assert f"{prefix}/checkpoints/4/commit_success.txt" in gcs.objects(f"{run}/checkpoints/4/")
  metrics = [n for n in gcs.objects(f"{run}/") if n.endswith("_metrics.jsonl")]
  assert metrics == [f"{prefix}/train_metrics.jsonl"]  # run files: process 0 only
  model = gram_jax.load_pretrained(run)  # one process reads the two hosts' shards
  assert all(np.isfinite(x).all() for x in _params(model))


def test_self_train_on_gs_journals_in_the_bucket_and_resumes_after_preemption(gcs, tmp_path):
  bucket = gcs.bucket()
  tasks = ("category",)
  files = {
      "seed_files": synthetic.as_proved(synthetic.make_pairs(120, 0, tasks), 0),
      "labeled_files": synthetic.make_pairs(12, 1, tasks),
      "unlabeled_files": synthetic.as_unlabeled(synthetic.make_pairs(48, 2, tasks), 3),
      "heldout_files": synthetic.make_pairs(16, 4, tasks),
      "task_files": synthetic.make_pairs(8, 5, tasks)}
  data = [f"--config.self_train.{field}=" + write_jsonl(rows, f"{bucket}/data/{field}.jsonl")
          for field, rows in files.items()]
  run = f"{bucket}/runs/self_train"
  small = dict(rounds=1, prover_steps=20, policy_steps=20, round_steps=10, policy_epochs=1.0,
               max_new_tokens=48, batch_size=16, baseline=False, final_finetune_steps=5)
  overrides = [f"--config.workdir={run}", "--config.checkpoint.every_steps=10", *data,
               *[f"--config.self_train.{k}={v}" for k, v in small.items()]]
  chunks = lambda: gcs.objects(f"{run}/round_1/judged.jsonl.journal/")
  code, seconds, err = cli.signal_when(  # preempted while π_φ labels round 1's pool
      "configs/self_train.py", overrides, lambda: len(chunks()) >= 2, signal.SIGTERM,
      timeout=900)
  assert code == 0 and seconds < 30, err[-3000:]
  journal_rows = [json.loads(line) for name in chunks()
                  for line in storage.read_text(f"{bucket}/{name}").splitlines()]
  labeled = len(journal_rows) - 1  # after the header
  assert 0 < labeled < 48 and "journal" in journal_rows[0]
  result = cli.run_main("configs/self_train.py", *overrides, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming at item {labeled} of 48" in result.stderr
  stages = [json.loads(line)["stage"] for line in
            storage.read_text(f"{run}/rounds.jsonl").splitlines()]
  assert stages == ["warm start", "round 1", "task adaptation (rationale + verdict SFT)"]
  assert not chunks()  # the journal goes once its file is written
  for name in ("round_1/kept.jsonl", "round_1/labels.json", "report.md", "hf/config.json",
               "hf/judge.json", "hf/model.safetensors", "round_1/policy/train_metrics.jsonl"):
    assert storage.isfile(f"{run}/{name}"), name
