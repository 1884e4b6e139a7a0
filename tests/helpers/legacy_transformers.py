"""transformers 4.x beside the 5.x the project installs: a folder put first on PYTHONPATH of a
subprocess (it shares torch and everything else with the test environment), fetched from
PyPI once into a cache. RLHF stacks often pin 4.x; exports must load there the same."""
import fcntl
import os
import shutil
import subprocess
import sys

REQUIREMENTS = ("transformers>=4.57,<5", "huggingface-hub>=0.34,<1.0", "tokenizers>=0.22,<0.23")


def cache_dir() -> str:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "gram_jax", "transformers4")


def transformers4() -> str | None:
  """The folder holding transformers 4.x, or None when PyPI cannot be reached."""
  folder = cache_dir()
  done = os.path.join(folder, "site")
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one installs, the others wait
    if os.path.isdir(os.path.join(done, "transformers")):
      return done
    staging = done + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                             "--disable-pip-version-check", "--target", staging,
                             *REQUIREMENTS], capture_output=True, text=True)
    if result.returncode:
      shutil.rmtree(staging, ignore_errors=True)
      return None
    os.replace(staging, done)
    return done
