"""Non-finite weights and settings never become NaN rewards: a NaN tensor, a NaN or
non-positive config value, an adapter scale that overflows or a damaged checkpoint is
refused on load in one line naming the file and the tensor or field, and the server never
answers 200 with a non-finite score."""
import json
import math
import os

import numpy as np
import pytest
from flax import nnx

import gram_jax
from gram_jax import checkpoint
from gram_jax.hf import peft, safetensors_io
from gram_jax.models import lora
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from tests.reliability.test_bad_input import hf_dir  # noqa: F401 (a fixture)
from tests.reliability.test_serve_hostile import PAIR, post, tiny_reward


def _edit_config(path, **changes):
  config_path = os.path.join(path, "config.json")
  config = json.load(open(config_path))
  config.update(changes)
  with open(config_path, "w") as f:
    json.dump(config, f)  # NaN and Infinity as JSON's non-standard literals, as Python writes


def test_a_nan_weight_is_refused_naming_the_tensor(hf_dir):
  file = os.path.join(hf_dir, "model.safetensors")
  header, start = safetensors_io.read_header(file)
  tensors = {name: safetensors_io.read_tensor(file, entry, start, name).copy()
             for name, entry in header.items()}
  tensors["model.layers.1.mlp.up_proj.weight"][3, 5] = np.nan
  safetensors_io.write_file(file, [(n, t.shape, t.dtype, lambda t=t: t)
                                   for n, t in tensors.items()])
  with pytest.raises(gram_jax.GramError, match=r"model: tensor 'model.layers.1.mlp.up_proj."
                     r"weight' holds NaN or infinite values; the weights are damaged$"):
    gram_jax.load_pretrained(hf_dir)


@pytest.mark.parametrize("changes,message", [
    ({"rope_parameters": {"rope_type": "default", "rope_theta": math.nan}},
     "rope_theta must be a finite positive number, got nan"),
    ({"rms_norm_eps": -1e-6}, "rms_norm_eps must be a finite positive number, got -1e-06"),
    ({"rms_norm_eps": math.inf}, "rms_norm_eps must be a finite positive number, got inf"),
    ({"num_hidden_layers": "two"}, "invalid literal for int"),
    ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer, got 0"),
    ({"vocab_size": -4}, "vocab_size must be a positive integer, got -4")])
def test_non_finite_or_non_positive_config_values_are_refused(hf_dir, changes, message):
  _edit_config(hf_dir, **changes)
  with pytest.raises(gram_jax.GramError, match=f"config.json: .*{message}"):
    gram_jax.load_pretrained(hf_dir)


def test_a_checkpoint_holding_a_nan_is_refused_on_restore(tmp_path, hf_dir):
  model = gram_jax.load_pretrained(hf_dir)
  kernel = model.layers[0].mlp.down_kernel
  kernel.value = kernel.value.at[0, 0].set(np.inf)
  path = checkpoint.save_model(model, str(tmp_path / "ckpt"))
  with pytest.raises(gram_jax.GramError, match=r"ckpt: tensor 'layers/0/mlp/down_kernel' "
                     "holds NaN or infinite values"):
    gram_jax.load_pretrained(path)


def _adapter(tmp_path, model, alpha: float, b_value: float) -> str:
  spec = lora.Lora(("q",), rank=2, alpha=alpha)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  adapters = lora.init_adapters(params, spec.targets, spec.rank, __import__("jax").random.key(0))
  for layer in adapters["layers"].values():
    for block in layer.values():
      for pair in block.values():
        pair["b"] = pair["b"] + b_value
  return peft.save_adapter(adapters, spec, str(tmp_path / f"adapter_{alpha}_{b_value}"))


@pytest.mark.parametrize("alpha,b_value,message", [
    (math.nan, 0.1, "lora_alpha=nan must be a finite positive number"),
    (-8.0, 0.1, "lora_alpha=-8.0 must be a finite positive number"),
    (1e308, 0.1, r"merged into the model \(scale lora_alpha / r = 5e\+307\): tensor "
                 "'layers/0/attn/q_kernel' holds NaN or infinite values"),
    (8.0, math.nan, "adapter_model.safetensors: tensor 'base_model.model.model.layers.0."
                    "self_attn.q_proj.lora_B.weight' holds NaN")])
def test_adapters_that_would_make_nan_weights_are_refused(tmp_path, hf_dir, alpha, b_value,
                                                         message):
  model = gram_jax.load_pretrained(hf_dir)
  path = _adapter(tmp_path, model, alpha, b_value)
  with pytest.raises(gram_jax.GramError, match=message):
    peft.apply_adapter(model, path)


def test_the_server_never_answers_200_with_a_non_finite_score():
  reward = tiny_reward()
  score = reward.score_prepared

  def nan_scores(rows):
    scores, trimmed = score(rows)
    return np.full_like(scores, np.nan), trimmed
  reward.score_prepared = nan_scores
  running = serve_in_background(RewardServer(reward))
  try:
    status, answer, _ = post(running.url, "/score", {"pairs": [PAIR]})
    assert status == 500
    assert answer == {"error": "the model produced a non-finite score (NaN or infinity): its "
                               "weights or numerics are damaged"}
  finally:
    running.stop()
