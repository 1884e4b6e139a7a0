"""gram_jax's XLA:CPU options: applied to its programs, overridable, never at import time."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gram_jax import parallel


@pytest.fixture(autouse=True)
def backend_started():
  """The backend starts with the session's flags (8 devices), never with a test's below:
  compiler_options() asks for the backend, and the first ask fixes the device count."""
  jax.devices()


def test_cpu_programs_keep_ynnpack_to_the_dots(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  options = parallel.compiler_options()
  assert options == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
  # The option reaches XLA: the column sum that YNNPACK would take is XLA's own again.
  column_sum = lambda x: jnp.sum(x, axis=0)
  x = jnp.ones((1024, 128))
  default = jax.jit(column_sum).lower(x).compile().as_text()
  ours = jax.jit(column_sum, compiler_options=options).lower(x).compile().as_text()
  assert "__ynn_fusion" in default and "__ynn_fusion" not in ours


def test_a_users_xla_flag_wins(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
  assert parallel.compiler_options() is None


def test_jit_builds_at_the_first_call_and_keeps_static_arguments():
  calls = []

  def scaled(x, factor):
    calls.append(factor)  # traced once per static value
    return x * factor

  jitted = parallel.jit(scaled, static_argnums=1)
  assert not calls
  x = np.arange(4.0, dtype=np.float32)
  np.testing.assert_array_equal(jitted(x, 2.0), x * 2)
  np.testing.assert_array_equal(jitted(x + 1, 2.0), (x + 1) * 2)
  assert calls == [2.0]
