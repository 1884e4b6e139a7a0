"""The jitted sharded step: same numbers on 8 devices as on 1, accumulation = big batch."""
import jax
import numpy as np
import pytest

from gram_jax import parallel
from gram_jax.data import loader
from gram_jax.stages import common
from tests.helpers import train_fixtures


def _run_steps(mesh, micro_batches: int, rows: int, steps: int = 3):
  trainer, model_config, c = train_fixtures.make_trainer(mesh)
  c.model.path = ""
  c.seed = 0
  params = common.initial_params(c, model_config, mesh)
  state = trainer.init_state(params, seed=0)
  step_fn = trainer.compile_step()
  batches = loader.BatchIterator(train_fixtures.random_dataset(), rows=rows, seq_len=32,
                                 micro_batches=micro_batches, seed=3, pack=True)
  losses = []
  for _ in range(steps):
    state, metrics = step_fn(state, trainer.put_batch(next(batches)))
    losses.append(float(metrics["loss"]))
  assert int(state["step"]) == steps and np.isfinite(losses).all()
  return losses, jax.device_get(state["params"])


def _assert_params_close(a, b, rtol=1e-5, atol=5e-6):
  """Adam scales every coordinate's step to about lr (1e-3 here), so coordinates whose
  gradient is ~0 turn summation-order noise into a visible part of a step: atol is 0.5% of
  one step; everything else is held to 1e-5 relative."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_eight_device_mesh_matches_one_device():
  one = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  eight = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  losses_1, params_1 = _run_steps(one, micro_batches=1, rows=8)
  losses_8, params_8 = _run_steps(eight, micro_batches=1, rows=8)
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  _assert_params_close(params_8, params_1)


def test_gradient_accumulation_equals_one_big_batch():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  trainer, model_config, c = train_fixtures.make_trainer(mesh)
  params = common.initial_params(c, model_config, mesh)
  batches = loader.BatchIterator(train_fixtures.random_dataset(), rows=8, seq_len=32,
                                 micro_batches=4, seed=3, pack=True)
  split = next(batches)  # [4, 8, 32]
  whole = {k: v.reshape(1, 32, 32) for k, v in split.items()}
  results = []
  for batch in (split, whole):
    state = trainer.init_state(jax.tree.map(lambda x: x.copy(), params), seed=0)
    state, metrics = trainer.compile_step()(state, trainer.put_batch(batch))
    results.append((float(metrics["loss"]), jax.device_get(state["params"])))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
  _assert_params_close(results[0][1], results[1][1])


def test_non_finite_loss_skips_the_update():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  trainer, model_config, c = train_fixtures.make_trainer(mesh)
  params = common.initial_params(c, model_config, mesh)
  params["embed"] = params["embed"].at[5].set(np.nan)
  state = trainer.init_state(params, seed=0)
  before = jax.device_get({"params": state["params"], "opt_state": state["opt_state"]})
  batch = next(loader.BatchIterator(train_fixtures.random_dataset(), rows=8, seq_len=32))
  batch["input_ids"][0, 0, :] = 5
  state, metrics = trainer.compile_step()(state, trainer.put_batch(batch))
  assert not bool(metrics["finite"])
  after = jax.device_get({"params": state["params"], "opt_state": state["opt_state"]})
  # Every parameter and optimizer moment is kept as it was (NaN where it was NaN).
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(new, old)


def test_bfloat16_moments_are_stored_in_bfloat16_and_train_like_float32():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  runs = {}
  for dtype in ("float32", "bfloat16"):
    c = train_fixtures.train_config()
    c.train.moment_dtype = dtype
    trainer, model_config, c = train_fixtures.make_trainer(mesh, c=c)
    state = trainer.init_state(common.initial_params(c, model_config, mesh), seed=0)
    step_fn = trainer.compile_step()
    batches = loader.BatchIterator(train_fixtures.random_dataset(), rows=8, seq_len=32,
                                   seed=3, pack=True)
    losses = []
    for _ in range(6):
      state, metrics = step_fn(state, trainer.put_batch(next(batches)))
      losses.append(float(metrics["loss"]))
    moments = [x for x in jax.tree.leaves(state["opt_state"]) if x.ndim >= 1]
    runs[dtype] = (losses, {str(x.dtype) for x in moments},
                   sum(x.nbytes for x in moments))
  assert runs["float32"][1] == {"float32"} and runs["bfloat16"][1] == {"bfloat16"}
  assert runs["bfloat16"][2] * 2 == runs["float32"][2]  # half the optimizer's bytes
  assert runs["bfloat16"][0][-1] < runs["bfloat16"][0][0] - 0.05  # it learns
  np.testing.assert_allclose(runs["bfloat16"][0], runs["float32"][0], rtol=0.02)
