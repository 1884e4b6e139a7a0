"""Bad model directories and tokenizers give one clear line naming the file, tensor or field."""
import json
import os
import subprocess
import sys

import pytest

import gram_jax
from gram_jax.hf import safetensors_io
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures


@pytest.fixture()
def hf_dir(tmp_path):
  path = str(tmp_path / "model")
  hf_fixtures.make_hf_model("llama_untied", path)
  return path


def _edit_config(path, **changes):
  config_path = os.path.join(path, "config.json")
  with open(config_path) as f:
    config = json.load(f)
  config.update(changes)
  with open(config_path, "w") as f:
    json.dump(config, f)


def _rewrite_weights(path, transform):
  file = os.path.join(path, "model.safetensors")
  header, start = safetensors_io.read_header(file)
  tensors = {name: safetensors_io.read_tensor(file, entry, start, name)
             for name, entry in header.items()}
  tensors = transform(tensors)
  safetensors_io.write_file(file, [(n, t.shape, t.dtype, lambda t=t: t)
                                   for n, t in tensors.items()])


def test_missing_config_json(tmp_path):
  os.makedirs(tmp_path / "empty")
  with pytest.raises(gram_jax.GramError, match="neither a Hugging Face model directory"):
    gram_jax.load_pretrained(str(tmp_path / "empty"))


def test_missing_directory(tmp_path):
  with pytest.raises(gram_jax.GramError, match="model directory not found"):
    gram_jax.load_pretrained(str(tmp_path / "nope"))


def test_unsupported_model_type(hf_dir):
  _edit_config(hf_dir, model_type="mixtral")
  with pytest.raises(gram_jax.GramError, match="config.json: unsupported value for "
                     "'model_type': 'mixtral'"):
    gram_jax.load_pretrained(hf_dir)


@pytest.mark.parametrize("field,value", [("hidden_act", "gelu"), ("mlp_bias", True),
                                         ("rope_parameters", {"rope_type": "yarn",
                                                              "rope_theta": 1e4})])
def test_unsupported_options_name_the_field(hf_dir, field, value):
  _edit_config(hf_dir, **{field: value})
  with pytest.raises(gram_jax.GramError, match=f"'{field}"):
    gram_jax.load_pretrained(hf_dir)


def test_missing_tensor(hf_dir):
  _rewrite_weights(hf_dir, lambda t: {k: v for k, v in t.items()
                                      if k != "model.layers.1.mlp.up_proj.weight"})
  with pytest.raises(gram_jax.GramError,
                     match="tensor 'model.layers.1.mlp.up_proj.weight' is missing"):
    gram_jax.load_pretrained(hf_dir)


def test_shape_mismatch_names_tensor_and_both_shapes(hf_dir):
  _rewrite_weights(hf_dir, lambda t: {**t, "model.norm.weight": t["model.norm.weight"][:30]})
  with pytest.raises(gram_jax.GramError,
                     match=r"'model.norm.weight' has shape \(30,\), config.json implies \(32,\)"):
    gram_jax.load_pretrained(hf_dir)


def test_pickle_only_checkpoint_is_refused(hf_dir):
  os.rename(os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin"))
  with pytest.raises(gram_jax.GramError, match="only safetensors weights are loaded"):
    gram_jax.load_pretrained(hf_dir)


def test_label_that_is_not_one_token(tiny_tokenizer_dir):
  tokenizer = tok.load_tokenizer(tiny_tokenizer_dir)
  assert len(tok.label_token_ids(tokenizer, ["A", "B"])) == 2
  with pytest.raises(gram_jax.GramError, match="verdict label 'Response A' is"):
    tok.label_token_ids(tokenizer, ["Response A", "B"])


def test_cli_prints_one_line_error(hf_dir, tmp_path):
  _edit_config(hf_dir, model_type="gpt2")
  result = subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--src={hf_dir}",
                           f"--dst={tmp_path / 'out'}", "--to=orbax"],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "'model_type': 'gpt2'" in lines[0]
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "out")


def test_truncated_safetensors_file(hf_dir):
  file = os.path.join(hf_dir, "model.safetensors")
  size = os.path.getsize(file)
  with open(file, "r+b") as f:
    f.truncate(size - 100)
  with pytest.raises(gram_jax.GramError, match=r"tensor 'model.norm.weight': data_offsets "
                     r"\[\d+, \d+\] lie outside the file's [\d,]+ bytes of data \(a truncated "
                     r"file\?\)"):
    gram_jax.load_pretrained(hf_dir)


def test_export_refuses_to_replace_an_unrelated_directory(hf_dir, tmp_path):
  precious = tmp_path / "precious"
  precious.mkdir()
  (precious / "notes.txt").write_text("keep me")
  model = gram_jax.load_pretrained(hf_dir)
  with pytest.raises(gram_jax.GramError, match="is not a model export"):
    gram_jax.save_pretrained(model, str(precious))
  from gram_jax import checkpoint
  with pytest.raises(gram_jax.GramError, match="is not a gram_jax checkpoint"):
    checkpoint.save_model(model, str(precious))
  assert (precious / "notes.txt").read_text() == "keep me"


def test_a_lone_surrogate_in_a_data_file_names_file_line_and_field(tmp_path):
  from gram_jax import GramError
  from gram_jax.data import preference, records
  from gram_jax.stages import evaluate
  lines = ['{"prompt": "q", "chosen": "x \\ud83d", "rejected": "b"}',
           '{"prompt": "q", "chosen": "fine \\ud83d\\ude00", "rejected": "b"}']
  path = tmp_path / "s.jsonl"
  path.write_text("\n".join(lines) + "\n")
  expected = (f"{path}:1: field 'chosen': holds a lone UTF-16 surrogate (an unpaired "
              "\\ud800-\\udfff escape), which is not text")
  with pytest.raises(GramError) as error:
    records.read_records([str(path)], preference.parse_preference_pair, "fail")
  assert str(error.value) == expected
  kept, report = records.read_records([str(path)], preference.parse_preference_pair, "skip")
  assert [p.chosen for p in kept] == ["fine \U0001F600"] and sum(report.skipped.values()) == 1
  with pytest.raises(GramError, match=r"s\.jsonl:1: field 'chosen': holds a lone"):
    evaluate.read_rows(str(path))
  array = tmp_path / "s.json"
  array.write_text('[{"prompt": "q", "chosen": "a", "rejected": ["b", "\\udc00"]}]')
  with pytest.raises(GramError, match=r"s\.json\[0\]: field 'rejected\[1\]': holds a lone"):
    evaluate.read_rows(str(array))
