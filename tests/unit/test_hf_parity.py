"""gram_jax decoders are numerically the transformers model: logits, export and Orbax round trips."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import gram_jax
from tests.helpers import hf_fixtures

ALL = list(hf_fixtures.FAMILIES)


@pytest.fixture(scope="module", params=ALL)
def hf_model(request, tmp_path_factory):
  out = str(tmp_path_factory.mktemp(request.param))
  model = hf_fixtures.make_hf_model(request.param, out, with_tokenizer=True)
  return request.param, out, model


@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
def test_logits_match_transformers(hf_model, left):
  _, path, torch_model = hf_model
  ids, mask = hf_fixtures.padded_batch(left=left)
  expected = hf_fixtures.hf_logits(torch_model, ids, mask)
  model = gram_jax.load_pretrained(path)
  got = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
  assert got.shape == expected.shape
  real = mask.astype(bool)
  assert np.abs(got - expected)[real].max() <= 1e-4
  assert np.abs(expected[real]).max() > 0.5  # the comparison is not between near-zero logits


def test_model_config_mapped(hf_model):
  name, path, torch_model = hf_model
  model_config = gram_jax.load_pretrained(path).config
  hf = torch_model.config
  assert model_config.num_kv_heads == 2 and model_config.num_heads == 4  # GQA
  assert model_config.tie_word_embeddings == hf.tie_word_embeddings
  assert model_config.rope_type == ("llama3" if name == "llama3_tied" else "default")
  assert model_config.qkv_bias == (name == "qwen2")
  assert model_config.qk_norm == (name in ("qwen3", "gemma3"))
  if name == "gemma3":
    assert model_config.layer_types == ("sliding", "full") and model_config.sliding_window == 4
    assert (model_config.rope_local_theta, model_config.rope_theta) == (1e4, 1e6)
    assert model_config.query_pre_attn_scalar == 12 and model_config.sandwich_norms


def test_export_round_trip_is_bit_identical(hf_model, tmp_path):
  _, path, torch_model = hf_model
  model = gram_jax.load_pretrained(path)
  tokenizer = gram_jax.text.tokenizer.load_tokenizer(path)
  out = gram_jax.save_pretrained(model, str(tmp_path / "export"), tokenizer=tokenizer)
  original = hf_fixtures.read_safetensors_dir(path)
  exported = hf_fixtures.read_safetensors_dir(out)
  assert sorted(original) == sorted(exported)
  for name, tensor in original.items():
    assert tensor.dtype == exported[name].dtype and torch.equal(tensor, exported[name]), name
  reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(
      out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  ids, mask = hf_fixtures.padded_batch()
  np.testing.assert_array_equal(hf_fixtures.hf_logits(reloaded.eval(), ids, mask),
                                hf_fixtures.hf_logits(torch_model, ids, mask))
  assert os.path.isfile(os.path.join(out, "generation_config.json"))
  assert transformers.AutoTokenizer.from_pretrained(out).encode("A B") == tokenizer.encode("A B")


def test_sharded_export_writes_index(tmp_path):
  path = str(tmp_path / "hf")
  hf_fixtures.make_hf_model("qwen2", path)
  out = gram_jax.save_pretrained(gram_jax.load_pretrained(path), str(tmp_path / "out"),
                                 max_shard_size="20KB")
  files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
  assert len(files) > 1 and os.path.isfile(os.path.join(out, "model.safetensors.index.json"))
  model = gram_jax.load_pretrained(out)  # the loader reads the sharded form back
  original = hf_fixtures.read_safetensors_dir(path)
  exported = hf_fixtures.read_safetensors_dir(out)
  assert all(torch.equal(original[k], exported[k]) for k in original)
  assert model.config.family == "qwen2"


def test_bfloat16_load_keeps_dtype_and_is_close(tmp_path):
  path = str(tmp_path / "hf")
  torch_model = hf_fixtures.make_hf_model("qwen3", path)
  model = gram_jax.load_pretrained(path, dtype="bfloat16")
  assert model.embed[...].dtype == jnp.bfloat16
  ids, mask = hf_fixtures.padded_batch()
  got = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
  expected = hf_fixtures.hf_logits(torch_model, ids, mask)
  assert np.abs(got - expected)[mask.astype(bool)].max() < 0.25
