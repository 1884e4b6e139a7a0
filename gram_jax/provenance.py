"""Which code produced a result: the git commit of the gram_jax checkout (and whether it had
local changes), else the installed version; reports and caches name it."""
import functools
import os
import subprocess
from importlib import metadata


def current_code_version() -> str:
  """`commit 1a2b3c4d5e6f` (`+ local changes` when the checkout differs from it), or
  outside a git checkout GRAM_JAX_CODE_VERSION (a copy sent to a device machine names the
  commit it was packed from) or `gram_jax 0.1.0`, read now: a process that outlives a
  commit (a benchmark driving stages for hours) asks this before each step it starts."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  git = lambda *args: subprocess.run(["git", "-C", root, *args], capture_output=True,
                                     text=True, timeout=10)
  try:
    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode == 0:
      dirty = git("status", "--porcelain", "--untracked-files=no", "--", "gram_jax", "configs")
      changes = " + local changes" if dirty.stdout.strip() else ""
      return f"commit {head.stdout.strip()}{changes}"
  except (OSError, subprocess.TimeoutExpired):
    pass
  if os.environ.get("GRAM_JAX_CODE_VERSION"):
    return os.environ["GRAM_JAX_CODE_VERSION"]
  try:
    return f"gram_jax {metadata.version('gram_jax')}"
  except metadata.PackageNotFoundError:
    return "gram_jax (version unknown)"


code_version = functools.cache(current_code_version)  # this process's code, read once
