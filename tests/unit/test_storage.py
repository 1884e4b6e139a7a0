"""Run paths: local, gs:// or s3://; any other URL is refused up front, never turned into a
local folder."""
import pytest

from gram_jax import storage
from gram_jax.errors import GramError


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
