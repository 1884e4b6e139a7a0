"""Two processes on localhost run data-parallel steps together (jax.distributed, CPU gloo)."""
import json
import os
import subprocess
import sys

import socket

from tests.helpers.cli import ROOT


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_two_processes_agree_on_the_loss():
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  procs = [subprocess.Popen([sys.executable, "-m", "tests.helpers.multiprocess_step", str(port),
                             str(i)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  outputs = [p.communicate(timeout=240) for p in procs]
  results = []
  for proc, (out, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-3000:]
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    results.append(json.loads(line[len("RESULT "):]))
  assert {r["process"] for r in results} == {0, 1}
  assert all(r["devices"] == 2 for r in results)
  assert results[0]["losses"] == results[1]["losses"]
