"""Loading onto a mesh of 8 fake CPU devices places every parameter on its expected sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import gram_jax
from gram_jax import parallel
from tests.helpers import hf_fixtures


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("qwen2"))
  model = hf_fixtures.make_hf_model("qwen2", path, hidden=64, heads=4, kv_heads=2)
  return path, model


def test_eight_devices_present():
  assert jax.device_count() == 8


def test_parameters_land_on_expected_shardings(qwen2_dir):
  path, torch_model = qwen2_dir
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  model = gram_jax.load_pretrained(path, mesh=mesh)
  attn = model.layers[0].attn
  expected = {
      "embed": (model.embed, P("tensor", "fsdp")),
      "lm_head": (model.lm_head, P("fsdp", "tensor")),
      "q_kernel": (attn.q_kernel, P("fsdp", "tensor", None)),
      "k_kernel": (attn.k_kernel, P("fsdp", "tensor", None)),
      "o_kernel": (attn.o_kernel, P("tensor", None, "fsdp")),
      "q_bias": (attn.q_bias, P("tensor", None)),
      "gate": (model.layers[0].mlp.gate_kernel, P("fsdp", "tensor")),
      "down": (model.layers[0].mlp.down_kernel, P("tensor", "fsdp")),
      "norm": (model.final_norm.scale, P(None)),
  }
  for name, (param, spec) in expected.items():
    sharding = param[...].sharding
    assert sharding.mesh.shape == mesh.shape, name
    assert sharding.spec == spec, (name, sharding.spec)
  ids, mask = hf_fixtures.padded_batch(lengths=(9, 5, 12, 7, 3, 12, 8, 10))
  batch = jax.device_put(jnp.asarray(ids), parallel.batch_sharding(mesh))
  batch_mask = jax.device_put(jnp.asarray(mask), parallel.batch_sharding(mesh))
  got = np.asarray(jax.jit(lambda m, i, k: m(i, k))(model, batch, batch_mask))
  expected_logits = hf_fixtures.hf_logits(torch_model, ids, mask)
  assert np.abs(got - expected_logits)[mask.astype(bool)].max() <= 1e-4


def test_axis_that_does_not_divide_is_replicated():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
  # 2 kv heads cannot split over tensor=4: the dim stays whole.
  spec = parallel.logical_to_spec(("embed", "kv_heads", "head_dim"), (64, 2, 16), mesh)
  assert spec == P("fsdp", None, None)


def test_mesh_size_mismatch_is_a_clear_error():
  with pytest.raises(gram_jax.GramError, match="needs 12 devices but 8"):
    parallel.make_mesh({"data": 3, "fsdp": 2, "tensor": 2})


def test_mesh_fills_free_axis():
  assert dict(parallel.make_mesh({"data": -1, "tensor": 2}).shape) == {
      "data": 4, "fsdp": 1, "tensor": 2}
