"""LoRA through the CLI: the adapters alone train and are checkpointed, the base stays as it
was, a resumed run equals an unbroken one, and the run directory loads as the merged model."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import gram_jax
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


def train(base, workdir, steps):
  result = cli.run_main(PRETRAIN, f"--config.model.path={base}", f"--config.workdir={workdir}",
                        f"--config.train.num_steps={steps}", *SMALL)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def flat(model) -> dict:
  return {jax.tree_util.keystr(path): np.asarray(value) for path, value in
          jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]}


def test_only_the_adapters_train_and_the_checkpoints_hold_them_alone(base, tmp_path):
  workdir = str(tmp_path / "run")
  train(base, workdir, 6)
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


def test_a_resumed_lora_run_equals_an_unbroken_one(base, tmp_path):
  import shutil
  workdir = tmp_path / "run"
  train(base, workdir, 6)
  unbroken = flat(gram_jax.load_pretrained(str(workdir)))
  shutil.rmtree(workdir / "checkpoints" / "6")  # as if it had stopped after step 3
  shutil.rmtree(workdir / "merged")
  resumed = train(base, workdir, 6)
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
  merged = lora.merge(params, adapters, 8.0)
  for got, want in zip(jax.tree.leaves(merged), jax.tree.leaves(params)):
    np.testing.assert_array_equal(got, want)  # b starts at zero
  a = np.asarray(adapters["layers"][0]["attn"]["o_kernel"]["a"])
  assert a.shape == (6, 2)  # o's input is heads x head_dim
  b = np.full((2, 6), 0.5, np.float32)
  adapters["layers"][0]["attn"]["o_kernel"]["b"] = b
  merged = lora.merge(params, adapters, 8.0)
  expected = params["layers"][0]["attn"]["o_kernel"] + 8.0 * (a @ b).reshape(2, 3, 6)
  np.testing.assert_allclose(merged["layers"][0]["attn"]["o_kernel"], expected, rtol=1e-6)


def test_lora_on_an_eight_device_mesh_trains_as_on_one(base, tmp_path):
  runs = {}
  for devices, mesh in ((1, ("--config.mesh.fsdp=1",)),
                        (8, ("--config.mesh.fsdp=4", "--config.mesh.tensor=2"))):
    workdir = str(tmp_path / f"mesh{devices}")
    result = cli.run_main(PRETRAIN, f"--config.model.path={base}", f"--config.workdir={workdir}",
                          "--config.train.num_steps=3", "--config.train.global_batch_size=8",
                          *SMALL, *mesh, devices=devices)
    assert result.returncode == 0, result.stderr[-3000:]
    runs[devices] = flat(gram_jax.load_pretrained(workdir))
  for key in runs[1]:
    np.testing.assert_allclose(runs[8][key], runs[1][key], rtol=1e-4, atol=1e-6, err_msg=key)
