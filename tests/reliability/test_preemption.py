"""SIGTERM (preemption) during training and evaluation, on one process and on two hosts: the
run saves its progress, exits 0 within seconds, and the same command resumes without redoing
finished work."""
import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from gram_jax import journal
from gram_jax.data import synthetic
from gram_jax.inference.reward import RewardModel
from gram_jax.text import templates
from tests.helpers import cli

PRETRAIN, EVALUATE = "configs/pretrain.py", "configs/evaluate.py"
TINY = ("--config.model.init.hidden_size=32", "--config.model.init.intermediate_size=64",
        "--config.model.init.head_dim=8", "--config.data.seq_len=128",
        "--config.data.cutoff_len=128", "--config.data.builtin_pairs=200",
        "--config.checkpoint.every_steps=1000")
EXIT_SECONDS = 30  # SLURM's and GCE's default grace period after SIGTERM


def _steps(workdir) -> list[int]:
  return [json.loads(l)["step"] for l in open(os.path.join(workdir, "train_metrics.jsonl"))]


def _checkpoints(workdir) -> list[int]:
  return sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())


@pytest.fixture(scope="module")
def preempted_training(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  flags = [f"--config.workdir={workdir}", "--config.train.num_steps=60", *TINY]
  metrics = os.path.join(workdir, "train_metrics.jsonl")
  code, seconds, err = cli.signal_when(PRETRAIN, flags, lambda: cli.jsonl_lines(metrics) >= 3,
                                       signal.SIGTERM)
  stopped_at = _steps(workdir)
  checkpoints = _checkpoints(workdir)
  resumed = cli.run_main(PRETRAIN, *flags)
  return dict(workdir=workdir, code=code, seconds=seconds, err=err, stopped_at=stopped_at,
              checkpoints=checkpoints, resumed=resumed)


def test_sigterm_in_training_saves_the_step_and_exits_zero(preempted_training):
  run = preempted_training
  assert run["code"] == 0, run["err"][-3000:]
  print(f"training: exit 0 {run['seconds']:.1f} s after SIGTERM")
  assert run["seconds"] < EXIT_SECONDS
  last = run["stopped_at"][-1]
  assert 3 <= last < 60 and run["stopped_at"] == list(range(1, last + 1))
  assert run["checkpoints"][-1] == last  # every_steps=1000: the latest is the preemption save
  assert f"preempted: saved checkpoint of step {last}" in run["err"]


def test_rerun_after_sigterm_resumes_without_redoing_steps(preempted_training):
  run = preempted_training
  assert run["resumed"].returncode == 0, run["resumed"].stderr[-3000:]
  assert _steps(run["workdir"]) == list(range(1, 61))  # each step trained exactly once


def test_sigterm_in_evaluation_keeps_scored_pairs_and_resumes(preempted_training, tmp_path):
  model = preempted_training["workdir"]
  pairs = synthetic.make_pairs(320, seed=5, tasks=("category",))
  data = journal.write_jsonl(pairs, str(tmp_path / "pairs.jsonl"))
  flags = [f"--config.workdir={tmp_path / 'eval'}", f"--config.model.path={model}",
           f"--config.eval.files={data}", "--config.eval.batch_size=2",
           "--config.eval.max_len=256", "--config.template.judge=compact"]
  journal_path = str(tmp_path / "eval" / "pairs" / "scores.journal")
  code, seconds, err = cli.signal_when(
      EVALUATE, flags, lambda: cli.jsonl_lines(journal_path) >= 2, signal.SIGTERM)
  assert code == 0 and seconds < EXIT_SECONDS, err[-3000:]
  print(f"evaluation: exit 0 {seconds:.1f} s after SIGTERM")
  saved = cli.jsonl_lines(journal_path) - 1  # the first line names the work
  assert 0 < saved < len(pairs) and f"{saved} of {len(pairs)} items saved" in err
  assert not os.path.exists(tmp_path / "eval" / "pairs" / "summary.json")

  result = cli.run_main(EVALUATE, *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming at item {saved} of {len(pairs)}" in result.stderr
  assert not os.path.exists(journal_path)
  rows = [json.loads(l) for l in open(tmp_path / "eval" / "pairs" / "results.jsonl")]
  reward = RewardModel.from_pretrained(model, max_len=256,
                                       template=templates.COMPACT_JUDGE_PROMPT)
  direct = reward.score_batch([(p["prompt"], p["chosen"], p["rejected"]) for p in pairs])
  np.testing.assert_allclose([[r["score_chosen"], r["score_rejected"]] for r in rows], direct,
                             rtol=1e-5, atol=1e-6)

  again = cli.run_main(EVALUATE, *flags)  # a finished file is not scored again
  assert again.returncode == 0 and "already evaluated" in again.stderr


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_sigterm_to_one_host_saves_the_same_step_on_both(tmp_path):
  workdir = str(tmp_path / "two_hosts")
  port = _free_port()
  env = {**cli.main_env(), "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
  logs = [open(tmp_path / f"host{i}.log", "w+") for i in range(2)]
  hosts = [subprocess.Popen(cli.main_command(
      PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=400", *TINY,
      f"--config.distributed.coordinator_address=127.0.0.1:{port}",
      "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
      cwd=cli.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=logs[i]) for i in range(2)]
  metrics = os.path.join(workdir, "train_metrics.jsonl")
  try:
    cli.wait_for(lambda: cli.jsonl_lines(metrics) >= 3, hosts, timeout=300)
    sent = time.time()
    hosts[1].send_signal(signal.SIGTERM)  # only host 1 is preempted
    codes = [h.wait(timeout=120) for h in hosts]
    print(f"two hosts: both exited {time.time() - sent:.1f} s after SIGTERM to host 1")
  finally:
    for h in hosts:
      h.kill()
  text = []
  for log in logs:
    log.seek(0)
    text.append(log.read())
  assert codes == [0, 0], text[0][-2000:] + text[1][-2000:]
  last = _checkpoints(workdir)[-1]
  assert last == _steps(workdir)[-1] < 400
  for log in text:  # both hosts stopped at the step they agreed on, and said so
    assert f"preempted: saved checkpoint of step {last}" in log
