"""LoRA and QLoRA kernels: the adapted product is the merged model's, a full-rank adapter's
first step is full fine-tuning's, the quantizers match a NumPy reference, and dropout is
PEFT's (inverted, on the adapter's input only)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gram_jax import parallel
from gram_jax.data import loader
from gram_jax.models import lora
from gram_jax.models.decoder import Decoder, abstract_model
from gram_jax.training import objectives, train_step
from tests.helpers import train_fixtures

ALL = tuple(lora.TARGETS)


def _model_params(seed: int = 0):
  config = train_fixtures.small_model_config()
  model = Decoder(config, nnx.Rngs(seed))
  graphdef, state = nnx.split(model)
  return config, graphdef, nnx.to_pure_dict(state)


def _tokens(vocab: int, seed: int = 1) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), (3, 12), 1, vocab)


def _random_adapters(params, spec: lora.Lora, seed: int = 2) -> dict:
  adapters = lora.init_adapters(params, spec.targets, spec.rank, jax.random.key(seed))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 64))
  return jax.tree.map(lambda x: 0.05 * jax.random.normal(next(keys), x.shape), adapters)


def test_the_adapted_product_equals_the_merged_model():
  config, graphdef, params = _model_params()
  spec = lora.Lora(ALL, 4, 8.0)
  adapters = _random_adapters(params, spec)
  ids = _tokens(config.vocab_size)
  adapted = nnx.merge(graphdef, lora.attach(params, adapters, spec))(ids)
  merged = nnx.merge(graphdef, lora.merge(params, adapters, spec))(ids)
  base = nnx.merge(graphdef, params)(ids)
  assert float(jnp.abs(merged - base).max()) > 1e-2  # the adapters do change the model
  np.testing.assert_allclose(adapted, merged, rtol=1e-5, atol=1e-5)


def test_a_full_rank_adapter_takes_full_fine_tunings_first_step():
  """With b = 0 only b moves; one SGD step gives W + s·a·Δb = W − lr·s²·a·aᵀ·∇W, which is
  full fine-tuning's W − lr·∇W when a's rows are orthonormal / s (rank >= fan-in)."""
  config = train_fixtures.small_model_config()
  mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  graphdef, abstract = abstract_model(config)
  _, _, params = _model_params()
  rank = max(config.hidden_size, config.intermediate_size, config.num_heads * config.head_dim)
  spec = lora.Lora(ALL, rank, 2.0 * rank)  # scale 2
  tx, learning_rate = optax.sgd(0.5), lambda step: 0.5
  batch = next(loader.BatchIterator(train_fixtures.random_dataset(), rows=4, seq_len=32,
                                    micro_batches=1, seed=3, pack=True))
  results = {}
  for name, with_lora in (("full", None), ("lora", spec)):
    trainer = train_step.Trainer.create(graphdef, abstract, tx, learning_rate,
                                        objectives.causal_lm_loss, mesh, (), with_lora)
    state = trainer.init_state(jax.tree.map(jnp.array, params), seed=0)
    if with_lora:
      def orthonormal(adapter, key):
        fan_in = adapter["a"].shape[0]
        q, _ = jnp.linalg.qr(jax.random.normal(key, (rank, rank)))
        return {**adapter, "a": q[:fan_in] / spec.scale}
      leaves, tree = jax.tree.flatten(state["params"], is_leaf=lambda x: "a" in x)
      keys = jax.random.split(jax.random.key(5), len(leaves))
      state["params"] = jax.tree.unflatten(tree, [orthonormal(x, k)
                                                  for x, k in zip(leaves, keys)])
    state, _ = trainer.compile_step()(state, trainer.put_batch(batch))
    results[name] = jax.device_get(trainer.full_params(state))
  for layer, block, name, _, before in lora._kernels(params, ALL):
    full = results["full"]["layers"][layer][block][name] - before
    adapted = results["lora"]["layers"][layer][block][name] - before
    assert np.abs(full).max() > 1e-4, name
    np.testing.assert_allclose(adapted, full, atol=1e-4 * np.abs(full).max(), err_msg=name)


def _numpy_quantized(w: np.ndarray, fan_in: int, kind: str) -> np.ndarray:
  """Reference: absmax over blocks of inputs, then the nearest level, dequantized."""
  w2 = w.astype(np.float64).reshape(fan_in, -1)
  block = 64 if kind == "nf4" and fan_in % 64 == 0 else fan_in
  out = np.empty_like(w2)
  for start in range(0, fan_in, block):
    part = w2[start:start + block]
    absmax = np.abs(part).max(axis=0)
    normed = part / np.where(absmax == 0, 1, absmax)
    if kind == "int8":
      levels = np.round(normed * 127) / 127
    else:
      levels = lora.NF4_LEVELS[np.abs(normed[..., None] - lora.NF4_LEVELS).argmin(-1)]
    out[start:start + block] = levels * absmax
  return out.reshape(w.shape)


@pytest.mark.parametrize("kind, half_gap", [("int8", 0.5 / 127),
                                            ("nf4", (1 - 0.6961928009986877) / 2)])
def test_quantizers_match_a_numpy_reference_within_their_step(kind, half_gap):
  w = np.random.RandomState(0).standard_normal((128, 4, 8)).astype(np.float32)
  quantized = lora.quantize(jnp.asarray(w), 1, kind)
  assert quantized.codes.dtype == (jnp.int8 if kind == "int8" else jnp.uint8)
  assert quantized.codes.size == w.size // (1 if kind == "int8" else 2)
  got = np.asarray(quantized.dequantize())
  assert got.dtype == np.float32 and got.shape == w.shape
  np.testing.assert_allclose(got, _numpy_quantized(w, 128, kind), rtol=1e-6, atol=1e-7)
  block = 64 if kind == "nf4" else 128
  absmax = np.abs(w.reshape(128 // block, block, 32)).max(axis=1)
  bound = np.repeat(absmax, block, axis=0).reshape(w.shape) * half_gap
  assert (np.abs(got - w) <= bound * (1 + 1e-6)).all()


@pytest.mark.parametrize("kind, tolerance", [("int8", 0.02), ("nf4", 0.2)])
def test_a_quantized_base_runs_the_model_on_its_dequantized_weights(kind, tolerance):
  config, graphdef, params = _model_params()
  spec = lora.Lora(ALL, 4, 8.0, quantize=kind)
  ids = _tokens(config.vocab_size)
  adapters = lora.init_adapters(params, ALL, 4, jax.random.key(0))  # b = 0: the base model
  quantized = nnx.merge(graphdef, lora.attach(lora.quantize_base(params, spec), adapters,
                                              spec))(ids)
  reference = jax.tree.map(np.asarray, params)
  for layer, block, name, inputs, kernel in lora._kernels(reference, ALL):
    fan_in = int(np.prod(kernel.shape[:inputs]))
    reference["layers"][layer][block][name] = _numpy_quantized(kernel, fan_in, kind
                                                               ).astype(np.float32)
  np.testing.assert_allclose(quantized, nnx.merge(graphdef, reference)(ids), rtol=1e-5,
                             atol=1e-5)
  full = nnx.merge(graphdef, params)(ids)
  error = float(jnp.linalg.norm(quantized - full) / jnp.linalg.norm(full))
  assert 0 < error < tolerance


def test_adapter_dropout_is_inverted_and_on_the_adapter_path_only():
  x = jax.random.normal(jax.random.key(0), (4, 16))
  w = jax.random.normal(jax.random.key(1), (16, 8))
  a = jax.random.normal(jax.random.key(2), (16, 2))
  b = jax.random.normal(jax.random.key(3), (2, 8))
  def product(key, b=b, rate=0.5):
    kernel_key = None if key is None else jax.random.key_data(jax.random.key(key))
    return lora.matmul(x, lora.Adapted(w, a, b, kernel_key, 2.0, rate))
  plain = product(None)
  np.testing.assert_allclose(plain, x @ w + 2.0 * (x @ a) @ b, rtol=1e-5)
  np.testing.assert_allclose(product(7, b=jnp.zeros_like(b)), x @ w, rtol=1e-6)
  np.testing.assert_array_equal(product(7), product(7))
  assert float(jnp.abs(product(7) - product(8)).max()) > 1e-3
  np.testing.assert_allclose(product(7, rate=0.0), plain, rtol=1e-6)
  mean = jnp.mean(jax.vmap(lambda k: lora.matmul(x, lora.Adapted(
      w, a, b, jax.random.key_data(k), 2.0, 0.5)))(jax.random.split(jax.random.key(9), 4000)),
      axis=0)
  spread = jnp.abs(2.0 * (x @ a) @ b).max()  # one sample's adapter term, at most
  assert float(jnp.abs(mean - plain).max()) < 0.1 * float(spread)


def test_nf4_scales_shard_with_the_kernel_s_first_input_axis_when_blocks_divide():
  from jax.sharding import NamedSharding, PartitionSpec
  mesh = parallel.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
  kernel = lambda fan_in: jax.ShapeDtypeStruct((fan_in, 4, 16), jnp.bfloat16)
  params = {"layers": {0: {"attn": {"q_kernel": kernel(1024)}}, 1: {"attn": {"q_kernel":
                                                                            kernel(256)}}}}
  sharded = NamedSharding(mesh, PartitionSpec("fsdp", None, None))
  shardings = {"layers": {i: {"attn": {"q_kernel": sharded}} for i in (0, 1)}}
  spec = lora.Lora(("q",), 4, 8.0, quantize="nf4")
  out = lora.base_shardings(shardings, params, spec)["layers"]
  assert out[0]["attn"]["q_kernel"].scales.spec == PartitionSpec("fsdp", None, None)  # 16
  assert out[1]["attn"]["q_kernel"].scales.spec == PartitionSpec(None, None, None)  # 4 blocks
  quantized = jax.jit(lambda: lora.quantize_base(
      {"layers": {i: {"attn": {"q_kernel": jnp.ones(params["layers"][i]["attn"]["q_kernel"].shape,
                                                    jnp.bfloat16)}} for i in (0, 1)}}, spec),
      out_shardings={"layers": out})()
  assert quantized["layers"][0]["attn"]["q_kernel"].scales.sharding.spec[0] == "fsdp"
