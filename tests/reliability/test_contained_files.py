"""A model directory reads nothing outside itself: a symlinked chat template or judge card
pointing at a secret, or an index naming `../` or absolute weight files, is refused in one
line before anything is read (an export, and `--push_to_hub`, would carry it), while a
Hugging Face hub cache snapshot, whose files link into its repository's blobs/, loads."""
import json
import os
import shutil

import pytest

import gram_jax
from gram_jax import judge_card, pretrained
from gram_jax.hf import safetensors_io
from tests.helpers import hf_fixtures


@pytest.fixture()
def hf_dir(tmp_path):
  path = str(tmp_path / "model")
  hf_fixtures.make_hf_model("llama_untied", path, with_tokenizer=True)
  return path


@pytest.fixture()
def secret(tmp_path):
  path = tmp_path / "secret.txt"
  path.write_text("AWS_SECRET_ACCESS_KEY=do-not-upload")
  return str(path)


@pytest.mark.parametrize("name", ["chat_template.jinja", "tokenizer_config.json"])
def test_a_file_linked_outside_the_directory_is_refused(hf_dir, secret, name):
  target = os.path.join(hf_dir, name)
  if os.path.exists(target):
    os.remove(target)
  os.symlink(secret, target)
  message = rf"{name}: resolves outside .*model \(to .*secret.txt\); refusing to read it"
  with pytest.raises(gram_jax.GramError, match=message):
    gram_jax.load_pretrained(hf_dir)
  with pytest.raises(gram_jax.GramError, match=message):
    pretrained.load_tokenizer(hf_dir)


def test_a_judge_card_linked_outside_is_refused(hf_dir, secret):
  os.symlink(secret, os.path.join(hf_dir, judge_card.JUDGE_CARD))
  with pytest.raises(gram_jax.GramError, match="judge.json: resolves outside"):
    judge_card.read_judge_card(hf_dir)


@pytest.mark.parametrize("shard", ["../elsewhere.safetensors", "/tmp/elsewhere.safetensors"])
def test_an_index_naming_files_outside_is_refused(hf_dir, shard):
  header, _ = safetensors_io.read_header(os.path.join(hf_dir, "model.safetensors"))
  with open(os.path.join(hf_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": {name: shard for name in header}}, f)
  with pytest.raises(gram_jax.GramError, match=f"{shard!r} lies outside the directory"):
    gram_jax.load_pretrained(hf_dir)


def test_a_hub_cache_snapshot_linking_into_its_blobs_loads(hf_dir, tmp_path):
  repo = tmp_path / "hub" / "models--org--tiny"
  snapshot = repo / "snapshots" / "0123abc"
  os.makedirs(repo / "blobs")
  os.makedirs(snapshot)
  for name in os.listdir(hf_dir):
    blob = repo / "blobs" / f"blob-{name}"
    shutil.copy(os.path.join(hf_dir, name), blob)
    os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / name)
  model = gram_jax.load_pretrained(str(snapshot))
  assert model.config.num_layers == 2
  assert pretrained.load_tokenizer(str(snapshot)) is not None
