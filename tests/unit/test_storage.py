"""Run paths: a URL is refused up front, never turned into a local folder."""
import pytest

from gram_jax import storage
from gram_jax.errors import GramError


@pytest.mark.parametrize("path", ["gs://bucket/run", "s3://b/k", "gs:/bucket/run",
                                  "gcs://b", "az://container/x", "hf://org/model"])
def test_urls_are_refused_with_the_field_named(path):
  scheme = path.split(":")[0]
  with pytest.raises(GramError, match=f"^config.workdir: {path}: {scheme}:// paths are not "):
    storage.check_local(path, "config.workdir")


@pytest.mark.parametrize("path", ["", "runs/a", "/abs/run", "C:/runs/a", "./gs/bucket",
                                  "my:file"])
def test_local_paths_pass(path):
  storage.check_local(path, "config.workdir")


def test_data_sources_read_by_their_own_libraries_pass_where_data_is_read():
  storage.check_local("hf://org/pairs@train", "config.data.train_files", data=True)
  storage.check_local("tfds://pairs@test", "config.eval.files", data=True)
  with pytest.raises(GramError, match="config.eval.files: gs://b/x.jsonl: gs:// paths"):
    storage.check_local("gs://b/x.jsonl", "config.eval.files", data=True)
