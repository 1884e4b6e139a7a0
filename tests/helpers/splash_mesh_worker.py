"""Splash attention under shard_map on an 8-device CPU mesh (run by test_attention.py with
XLA_FLAGS=--xla_force_host_platform_device_count=8): batch over data × fsdp, heads over
tensor; forward and gradients against the XLA reference on the same sharded inputs; then
two training steps of the Trainer (which traces under its mesh) with splash and with XLA."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gram_jax import parallel
from gram_jax.data import loader
from gram_jax.models import attention
from gram_jax.stages import common
from tests.helpers import train_fixtures


def main() -> None:
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  rng = np.random.default_rng(0)
  b, t, h, kv, d = 4, 256, 4, 2, 64
  q, k, v = (jnp.asarray(rng.normal(size=(b, t, n, d)), jnp.float32) for n in (h, kv, kv))
  segments = np.ones((b, t), np.int32)
  segments[:, 90:] = 2
  segments[1, 200:] = 0
  segments = jnp.asarray(segments)
  heads = NamedSharding(mesh, P(("data", "fsdp"), None, "tensor", None))
  rows = NamedSharding(mesh, P(("data", "fsdp"), None))
  q, k, v = (jax.device_put(x, heads) for x in (q, k, v))
  segments = jax.device_put(segments, rows)
  valid = np.asarray(segments) > 0

  def loss(implementation):
    def value(q, k, v):
      out = attention.attention(q, k, v, segments, segments, implementation=implementation)
      return jnp.sum(jnp.where((segments > 0)[..., None, None], out, 0.0) ** 2), out
    return jax.jit(jax.value_and_grad(value, argnums=(0, 1, 2), has_aux=True))

  with jax.set_mesh(mesh):
    (_, out_s), grads_s = loss("splash")(q, k, v)
  (_, out_x), grads_x = loss("xla")(q, k, v)
  relative = lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()
                                / np.abs(np.asarray(a)).max())
  assert relative(np.asarray(out_x)[valid], np.asarray(out_s)[valid]) <= 1e-5
  for gx, gs in zip(grads_x, grads_s):
    assert relative(gx, gs) <= 1e-4
  assert out_s.sharding.spec == heads.spec, out_s.sharding
  print("splash on mesh", dict(mesh.shape), "ok")
  losses = {impl: train_losses(mesh, impl) for impl in ("splash", "xla")}
  np.testing.assert_allclose(losses["splash"], losses["xla"], rtol=1e-5)
  print("trainer with splash", losses)


def train_losses(mesh, implementation: str) -> list[float]:
  model_config = train_fixtures.small_model_config().replace(
      attention=implementation, attention_block_q=128, attention_block_kv=128)
  trainer, model_config, c = train_fixtures.make_trainer(mesh, model_config)
  state = trainer.init_state(common.initial_params(c, model_config, mesh), seed=0)
  batches = loader.BatchIterator(train_fixtures.random_dataset(), rows=4, seq_len=128, seed=1)
  step, losses = trainer.compile_step(), []
  for _ in range(2):
    state, metrics = step(state, trainer.put_batch(next(batches)))
    losses.append(float(metrics["loss"]))
  return losses


if __name__ == "__main__":
  main()
