"""LoRA through the CLI: the adapters alone train and are checkpointed, the base stays as it
was, a resumed run equals an unbroken one, and the run directory loads as the merged model;
its adapters load in `peft` over the transformers base with the same logits, and adapters
made by `peft` import here."""
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import gram_jax
from gram_jax import checkpoint
from gram_jax.models import lora
from tests.helpers import cli, hf_fixtures

PRETRAIN = "configs/pretrain.py"
SMALL = ("--config.data.seq_len=128", "--config.data.cutoff_len=128",
         "--config.data.builtin_pairs=60", "--config.checkpoint.every_steps=3",
         "--config.train.learning_rate=1e-2", "--config.train.warmup_ratio=0",
         "--config.model.lora.rank=4", "--config.model.lora.targets=q,v,o,down")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("base"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return path


def train(base, workdir, steps, *flags):
  result = cli.run_main(PRETRAIN, f"--config.model.path={base}", f"--config.workdir={workdir}",
                        f"--config.train.num_steps={steps}", *SMALL, *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def flat(model) -> dict:
  return {jax.tree_util.keystr(path): np.asarray(value) for path, value in
          jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]}


@pytest.fixture(scope="module")
def lora_run(base, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("lora") / "run")
  train(base, workdir, 6)
  return workdir


@pytest.fixture(scope="module")
def gemma_base(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("gemma_base"))
  hf_fixtures.make_hf_model("gemma3", path, with_tokenizer=True)
  return path


@pytest.fixture(scope="module")
def gemma_lora_run(gemma_base, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gemma_lora") / "run")
  train(gemma_base, workdir, 3)
  return workdir


def family_fixtures(request, family: str) -> tuple[str, str]:
  """(base, lora run) of a family: Qwen3's, or Gemma 3's (sandwich norms, sliding layers)."""
  if family == "qwen3":
    return request.getfixturevalue("base"), request.getfixturevalue("lora_run")
  return request.getfixturevalue("gemma_base"), request.getfixturevalue("gemma_lora_run")


def test_only_the_adapters_train_and_the_checkpoints_hold_them_alone(base, lora_run):
  workdir = lora_run
  before, after = flat(gram_jax.load_pretrained(base)), flat(gram_jax.load_pretrained(workdir))
  adapted = [k for k in before if any(f"'{lora.TARGETS[t][1]}'" in k
                                      for t in ("q", "v", "o", "down"))]
  assert adapted and set(before) == set(after)
  for key in before:
    delta = after[key].astype(np.float64) - before[key]
    if key not in adapted:
      np.testing.assert_array_equal(after[key], before[key], err_msg=key)  # frozen
      continue
    inputs = 2 if "o_kernel" in key else 1
    matrix = delta.reshape(int(np.prod(delta.shape[:inputs])), -1)
    singular = np.linalg.svd(matrix, compute_uv=False)  # float32 rounding of W + delta
    assert singular[0] > 0 and (singular > 1e-5 * singular[0]).sum() <= 4, key  # is ~1e-7
  losses = [json.loads(line)["loss"] for line in open(os.path.join(workdir,
                                                                   "train_metrics.jsonl"))]
  assert losses[-1] < losses[0]
  saved = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", "6",
                                                          "params"))
  leaves = jax.tree_util.tree_flatten_with_path(saved)[0]
  assert leaves and all(jax.tree_util.keystr(path).endswith(("['a']", "['b']"))
                        for path, _ in leaves)  # the adapters, nothing of the base
  assert sum(np.asarray(v).size for _, v in leaves) < 0.2 * sum(v.size for v in before.values())


def test_the_adapters_spec_is_a_run_file_of_its_own(base, lora_run, tmp_path):
  """A LoRA run directory loads from lora.json, never from its stage config; one written
  before lora.json existed still loads from the stage config's model.lora."""
  written = json.load(open(os.path.join(lora_run, "lora.json")))
  assert written == {"adapters": {"targets": ["q", "v", "o", "down"], "rank": 4, "alpha": 16.0,
                                  "dropout": 0.0, "quantize": ""},  # SMALL, alpha's default
                     "base_model": base}
  merged = flat(gram_jax.load_pretrained(lora_run))
  without_stage_config, legacy = tmp_path / "no_config", tmp_path / "legacy"
  shutil.copytree(lora_run, without_stage_config)
  os.remove(without_stage_config / "config.json")
  shutil.copytree(lora_run, legacy)
  os.remove(legacy / "lora.json")
  for copy in (without_stage_config, legacy):
    loaded = flat(gram_jax.load_pretrained(str(copy)))
    assert loaded.keys() == merged.keys()
    for key in merged:
      np.testing.assert_array_equal(loaded[key], merged[key], err_msg=key)
  for copy in (without_stage_config, legacy):
    adapters, spec, base_model = checkpoint.load_run_adapters(str(copy))
    assert spec == lora.Lora(("q", "v", "o", "down"), 4, 16.0) and base_model == base
    assert adapters


def test_a_resumed_qlora_run_with_dropout_equals_an_unbroken_one(base, tmp_path):
  """The 4-bit base is made again from its source on resume and the dropout masks follow
  the step, so resuming changes nothing."""
  import shutil
  workdir = tmp_path / "run"
  qlora = ("--config.model.lora.quantize=nf4", "--config.model.lora.dropout=0.1")
  train(base, workdir, 6, *qlora)
  unbroken = flat(gram_jax.load_pretrained(str(workdir)))
  shutil.rmtree(workdir / "checkpoints" / "6")  # as if it had stopped after step 3
  shutil.rmtree(workdir / "merged")
  resumed = train(base, workdir, 6, *qlora)
  assert "resumed at step 3 of 6" in resumed.stderr
  again = flat(gram_jax.load_pretrained(str(workdir)))
  for key in unbroken:
    np.testing.assert_array_equal(again[key], unbroken[key], err_msg=key)


def test_merging_zero_adapters_is_the_base_and_the_delta_is_a_times_b():
  params = {"embed": np.ones((4, 6), np.float32), "layers": {0: {
      "attn": {"q_kernel": np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3),
               "o_kernel": np.ones((2, 3, 6), np.float32), "q_norm": {"scale": np.ones(3)}},
      "input_norm": {"scale": np.ones(6)}}}}
  adapters = lora.init_adapters(params, ("q", "o"), 2, jax.random.key(0))
  merged = lora.merge(params, adapters, lora.Lora(("q", "o"), 2, 16.0))  # scale 8
  for got, want in zip(jax.tree.leaves(merged), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)  # b starts at zero
  a = np.asarray(adapters["layers"][0]["attn"]["o_kernel"]["a"])
  assert a.shape == (6, 2)  # o's input is heads x head_dim
  b = np.full((2, 6), 0.5, np.float32)
  adapters["layers"][0]["attn"]["o_kernel"]["b"] = b
  merged = lora.merge(params, adapters, lora.Lora(("q", "o"), 2, 16.0))  # scale 8
  expected = params["layers"][0]["attn"]["o_kernel"] + 8.0 * (a @ b).reshape(2, 3, 6)
  np.testing.assert_allclose(merged["layers"][0]["attn"]["o_kernel"], expected, rtol=1e-6)


@pytest.mark.parametrize("quantize", ["", "int8"])
def test_lora_on_an_eight_device_mesh_trains_as_on_one(base, tmp_path, quantize):
  runs = {}
  for devices, mesh in ((1, ("--config.mesh.fsdp=1",)),
                        (8, ("--config.mesh.fsdp=4", "--config.mesh.tensor=2"))):
    workdir = str(tmp_path / f"mesh{devices}")
    result = cli.run_main(PRETRAIN, f"--config.model.path={base}", f"--config.workdir={workdir}",
                          "--config.train.num_steps=3", "--config.train.global_batch_size=8",
                          f"--config.model.lora.quantize={quantize}", *SMALL, *mesh,
                          devices=devices)
    assert result.returncode == 0, result.stderr[-3000:]
    runs[devices] = flat(gram_jax.load_pretrained(workdir))
  for key in runs[1]:
    np.testing.assert_allclose(runs[8][key], runs[1][key], rtol=1e-4, atol=1e-6, err_msg=key)


IDS = np.random.RandomState(0).randint(1, hf_fixtures.VOCAB, (2, 11))


def _torch_logits(model) -> np.ndarray:
  import torch
  with torch.no_grad():
    return model(torch.tensor(IDS)).logits.float().numpy()


def _assert_same_logits(got, want):
  assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_a_lora_run_exports_a_peft_adapter_and_a_merged_model_with_its_logits(
    request, family, tmp_path):
  import peft
  base, lora_run = family_fixtures(request, family)
  import transformers
  from gram_jax import convert
  adapter, merged = str(tmp_path / "adapter"), str(tmp_path / "merged")
  convert.convert(lora_run, adapter, "peft")
  convert.convert(lora_run, merged, "hf")
  ours = np.asarray(gram_jax.load_pretrained(lora_run)(IDS))
  load = lambda path: transformers.AutoModelForCausalLM.from_pretrained(path,
                                                                        dtype="float32")
  with_adapter = peft.PeftModel.from_pretrained(load(base), adapter)
  _assert_same_logits(_torch_logits(with_adapter), ours)
  _assert_same_logits(_torch_logits(load(merged)), ours)
  # the merged export is base + (alpha / r) · B·A, tensor by tensor
  base_w, merged_w = (hf_fixtures.read_safetensors_dir(p) for p in (base, merged))
  pairs = hf_fixtures.read_safetensors_dir(adapter)
  changed = 0
  for name, weight in base_w.items():
    lora_a = f"base_model.model.{name[:-len('.weight')]}.lora_A.weight"
    expected = weight.numpy()
    if lora_a in pairs:
      lora_b = pairs[lora_a.replace("lora_A", "lora_B")].numpy()
      expected = expected + (16.0 / 4) * lora_b @ pairs[lora_a].numpy()
      changed += 1
    np.testing.assert_allclose(merged_w[name].numpy(), expected, rtol=1e-5, atol=1e-6,
                               err_msg=name)
  assert changed == 4 * 2  # q, v, o, down in each of the two layers


@pytest.mark.parametrize("family,options", [
    ("qwen3", {}), ("qwen3", {"use_rslora": True, "layers_to_transform": [1],
                              "lora_dropout": 0.1}), ("gemma3", {})])
def test_an_adapter_made_by_peft_imports_with_peft_s_logits(request, family, tmp_path,
                                                           options):
  import peft
  base = request.getfixturevalue("base" if family == "qwen3" else "gemma_base")
  import torch
  import transformers
  from gram_jax import convert
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype="float32")
  config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=[
      "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], **options)
  with_adapter = peft.get_peft_model(model, config).eval()
  with_adapter.save_pretrained(str(tmp_path / "adapter"))
  want = _torch_logits(with_adapter)
  assert np.abs(want - _torch_logits(with_adapter.get_base_model().__class__.from_pretrained(
      base, dtype="float32"))).max() > 1e-3  # the adapter changes the model
  out = convert.convert(base, str(tmp_path / "merged"), "orbax",
                        adapter=str(tmp_path / "adapter"))
  _assert_same_logits(np.asarray(gram_jax.load_pretrained(out)(IDS)), want)


@pytest.mark.parametrize("field, value", [("use_dora", True), ("bias", "all"),
                                          ("modules_to_save", ["lm_head"])])
def test_an_adapter_we_cannot_compute_the_same_is_refused_naming_its_field(
    base, lora_run, tmp_path, field, value):
  from gram_jax import convert
  from gram_jax.errors import GramError
  adapter = str(tmp_path / "adapter")
  convert.convert(lora_run, adapter, "peft")
  config_path = os.path.join(adapter, "adapter_config.json")
  config = json.load(open(config_path))
  json.dump({**config, field: value}, open(config_path, "w"))
  with pytest.raises(GramError, match=f"adapter_config.json: {field}="):
    convert.convert(base, str(tmp_path / "out"), "orbax", adapter=adapter)
