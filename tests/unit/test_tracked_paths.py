"""No tracked path holds ':' — such a path is a URL a hand check turned into folders."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_no_tracked_path_contains_a_colon():
  if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
    pytest.skip("not a git checkout")
  paths = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
  assert [p for p in paths if ":" in p] == []
