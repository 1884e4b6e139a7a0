"""Run `python -m gram_jax.main` in a subprocess, as a user would."""
import os
import subprocess
import sys
import tempfile
import time

from gram_jax import storage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main_env(devices: int = 1) -> dict:
  flags = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
  return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


def main_command(config: str, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "gram_jax.main", f"--config={os.path.join(ROOT, config)}",
          *overrides]


def run_main(config: str, *overrides: str, devices: int = 1,
             timeout: int = 600) -> subprocess.CompletedProcess:
  return subprocess.run(main_command(config, *overrides), cwd=ROOT, env=main_env(devices),
                        capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


def wait_for(ready, processes: list[subprocess.Popen], timeout: float = 300) -> None:
  """Polls `ready()` until true; fails if a process exits first or time runs out."""
  deadline = time.time() + timeout
  while not ready():
    if any(p.poll() is not None for p in processes) or time.time() > deadline:
      raise AssertionError(f"never got ready (exits {[p.poll() for p in processes]})")
    time.sleep(0.05)


def signal_when(config: str, overrides: list[str], ready, sig: int, devices: int = 1,
                timeout: float = 300) -> tuple[int, float, str]:
  """Starts the CLI, sends `sig` once `ready()` is true, and waits for the exit.

  Returns (exit status, seconds from the signal to the exit, stderr)."""
  with tempfile.TemporaryFile("w+") as err:
    process = subprocess.Popen(main_command(config, *overrides), cwd=ROOT,
                               env=main_env(devices), stdout=subprocess.DEVNULL, stderr=err,
                               text=True)
    try:
      wait_for(ready, [process], timeout)
    except AssertionError:
      process.kill()
      err.seek(0)
      raise AssertionError(f"exit {process.wait()} before the signal: {err.read()[-3000:]}")
    sent = time.time()
    process.send_signal(sig)
    code = process.wait(timeout=timeout)
    seconds = time.time() - sent
    err.seek(0)
    return code, seconds, err.read()


def jsonl_lines(path: str) -> int:
  """Complete lines in a file, local or gs:// (0 when absent)."""
  try:
    return storage.read_bytes(path).count(b"\n")
  except FileNotFoundError:
    return 0
