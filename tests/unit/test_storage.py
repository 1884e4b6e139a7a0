"""Run paths: local, gs:// or s3://; any other URL is refused up front, never turned into a
local folder. On object storage (an emulator): whole-file writes, directories committed by a
marker, local copies without the weights."""
import os

import pytest

from gram_jax import checkpoint, configlib, storage
from gram_jax.errors import GramError
from gram_jax.storage import write_atomic


@pytest.mark.parametrize("path", ["gs:/bucket/run", "gcs://b", "az://container/x",
                                  "hf://org/model", "gs:///run", "s3:/b/k", "ftp://host/x"])
def test_urls_no_layer_can_use_are_refused_with_the_field_named(path):
  scheme = path.split(":")[0]
  expected = f"^config.workdir: {path}: not a usable path .*local folder named '{scheme}:'"
  with pytest.raises(GramError, match=expected):
    storage.check(path, "config.workdir")


@pytest.mark.parametrize("path", ["", "runs/a", "/abs/run", "C:/runs/a", "./gs/bucket",
                                  "my:file", "gs://bucket/run", "s3://bucket/k", "gs://b"])
def test_local_paths_and_object_storage_pass(path):
  storage.check(path, "config.workdir")


def test_data_sources_read_by_their_own_libraries_pass_where_data_is_read():
  storage.check("hf://org/pairs@train", "config.data.train_files", data=True)
  storage.check("tfds://pairs@test", "config.eval.files", data=True)
  storage.check("gs://b/x.jsonl", "config.eval.files", data=True)
  with pytest.raises(GramError, match="config.workdir: hf://org/m: not a usable path"):
    storage.check("hf://org/m", "config.workdir")


def test_a_url_stays_a_url_where_local_paths_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.absolute("gs://b/run") == "gs://b/run"
  assert storage.absolute("run") == str(tmp_path / "run")
  assert storage.staging_path("gs://b/run/") == "gs://b/run/"
  assert storage.staging_path("out/") == "out.tmp"


def test_on_object_storage_whole_files_and_staged_directories(gcs):
  bucket = gcs.bucket()
  write_atomic(f"{bucket}/a.txt", "old")
  write_atomic(f"{bucket}/a.txt", "new")
  assert storage.read_text(f"{bucket}/a.txt") == "new"
  with pytest.raises(GramError, match="cannot write"):
    write_atomic(f"{bucket}/a.txt", "\ud800")
  assert storage.read_text(f"{bucket}/a.txt") == "new"
  target = f"{bucket}/model"
  write_atomic(f"{target}/marker.json", "{}")
  write_atomic(f"{target}/weights", "v1")
  with pytest.raises(RuntimeError):
    with storage.staged_dir(target, "marker.json") as staging:
      assert staging == target  # no rename: written in place ...
      assert not storage.exists(f"{target}/marker.json")  # ... after the marker went first
      write_atomic(f"{staging}/weights", "v2")
      raise RuntimeError("killed before the marker")
  # A failed write removes what it wrote (a full disk must not stay full); had the process
  # died instead, the folder would lack its marker and never be loaded.
  assert not storage.exists(target) or storage.listdir(target) == []


def test_a_local_copy_of_a_bucket_folder_leaves_the_weights_there(gcs):
  folder = f"{gcs.bucket()}/hf"
  for name in ("tokenizer.json", "config.json", "model.safetensors", "pytorch_model.bin"):
    write_atomic(f"{folder}/{name}", name)
  local = storage.local_copy(folder)
  assert sorted(os.listdir(local)) == ["config.json", "tokenizer.json"]
  assert storage.local_copy("relative/dir") == "relative/dir"


def test_training_on_s3_is_refused_up_front_where_orbax_cannot_checkpoint():
  """Orbax 0.12 turns s3://b/x into 's3:/b/x' (seen against moto): an error before any work
  rather than a failed save after the first step."""
  c = configlib.base_config("pretrain")
  c.workdir = "s3://bucket/run"
  expected = "^config.workdir: s3://bucket/run: Orbax checkpoints cannot live on s3://"
  with pytest.raises(GramError, match=expected):
    configlib.validate(c)
  with pytest.raises(GramError, match="Orbax checkpoints cannot live on s3://"):
    checkpoint.load_model("s3://bucket/model")
