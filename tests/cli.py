"""Run `python -m gram_jax.main` in a subprocess, as a user would."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
