"""Every attention kernel against the XLA reference on packed rows with padding."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gram_jax.models import attention
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _packed(b: int, t: int, h: int, kv: int, d: int, seed: int = 0):
  """Rows of two or three documents, one ending in padding and one starting with it."""
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=(b, t, n, d)), jnp.float32) for n in (h, kv, kv))
  segments = np.ones((b, t), np.int32)
  segments[:, t // 3:] = 2
  segments[0, 2 * t // 3:] = 3
  if b > 1:
    segments[1, t - t // 5:] = 0  # tail padding
  if b > 2:
    segments[2, :t // 7] = 0  # left padding (the scorer's rows)
  return q, k, v, jnp.asarray(segments)


def _relative(a, b) -> float:
  return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(a)).max())


def _forward_and_grads(implementation, q, k, v, segments, causal=True, block_q=64,
                       block_kv=32, window=0):
  valid = (segments > 0)[..., None, None]
  weights = jnp.sin(jnp.arange(q.shape[-1], dtype=jnp.float32))

  def run(q, k, v):
    return attention.attention(q, k, v, segments, segments, causal=causal,
                               implementation=implementation, block_q=block_q,
                               block_kv=block_kv, window=window)

  def loss(q, k, v):
    return jnp.sum(jnp.where(valid, run(q, k, v), 0.0) * weights)

  return jax.jit(run)(q, k, v), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t,block_q,block_kv", [(200, 64, 32), (96, 128, 128), (130, 32, 64)])
def test_flash_equals_xla_forward_and_gradients(causal, t, block_q, block_kv):
  q, k, v, segments = _packed(3, t, 4, 2, 16)
  valid = np.asarray(segments) > 0
  out_x, grads_x = _forward_and_grads("xla", q, k, v, segments, causal)
  out_f, grads_f = _forward_and_grads("flash", q, k, v, segments, causal, block_q, block_kv)
  assert _relative(np.asarray(out_x)[valid], np.asarray(out_f)[valid]) <= 1e-5
  for gx, gf in zip(grads_x, grads_f):
    assert _relative(gx, gf) <= 1e-4
  assert np.all(np.asarray(out_f)[~valid] == 0)  # padding queries attend nothing


def test_flash_decoding_one_query_against_a_cache():
  q, k, v, segments = _packed(3, 160, 4, 2, 16)
  for index in (0, 31, 32, 100, 159):
    args = (q[:, index:index + 1], k, v, segments[:, index:index + 1], segments)
    reference = attention.attention(*args, q_offset=index, implementation="xla")
    flash = attention.attention(*args, q_offset=jnp.int32(index), implementation="flash",
                                block_q=16, block_kv=32)
    valid = np.asarray(segments[:, index]) > 0
    assert _relative(np.asarray(reference)[valid], np.asarray(flash)[valid]) <= 1e-5


def test_blocks_that_cannot_meet_are_skipped():
  """The skip rule itself: causal bounds and segment ranges per block pair."""
  q, k, v, _ = _packed(2, 256, 2, 2, 8)
  segments = jnp.asarray(np.repeat(np.array([[1, 2, 3, 0]]), 64, axis=1).repeat(2, axis=0))
  blocks = attention._Blocks(q, k, v, segments, segments, 0, True, 64, 64, 0)
  span = lambda bounds: tuple(int(b) for b in bounds)
  assert [span(blocks.kv_blocks_of(i)) for i in range(4)] == [(0, 1), (0, 2), (0, 3), (0, 4)]
  assert [span(blocks.q_blocks_of(j)) for j in range(4)] == [(0, 4), (1, 4), (2, 4), (3, 4)]
  met = [[bool(blocks.meet(i, j)) for j in range(4)] for i in range(4)]
  assert met == [[i == j and i < 3 for j in range(4)] for i in range(4)]
  decoding = attention._Blocks(q[:, :1], k, v, segments[:, :1], segments, 130, True, 64, 64, 0)
  assert span(decoding.kv_blocks_of(0)) == (0, 3)  # keys 0..130 only
  # A 70-key window: query block 2 (queries 128..191) sees keys 59..191, blocks 0..2; key
  # block 0 (keys 0..63) is seen by queries up to 132, query blocks 0..2.
  windowed = attention._Blocks(q, k, v, segments, segments, 0, True, 64, 64, 70)
  assert span(windowed.kv_blocks_of(2)) == (0, 3) and span(windowed.kv_blocks_of(3)) == (1, 4)
  assert span(windowed.q_blocks_of(0)) == (0, 3) and span(windowed.q_blocks_of(1)) == (1, 4)


def test_flash_memory_is_linear_in_the_sequence():
  """Compiled temporaries of the gradient: doubling the length doubles them (no [t, t])."""
  def temporaries(t: int) -> int:
    q, k, v, segments = _packed(1, t, 2, 1, 16)
    loss = lambda q, k, v: jnp.sum(attention.attention(
        q, k, v, segments, segments, implementation="flash", block_q=128, block_kv=128))
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).compile()
    return compiled.memory_analysis().temp_size_in_bytes
  small, large = temporaries(2048), temporaries(4096)
  assert large <= 2.5 * small, (small, large)
  assert large < 4096 * 4096 * 4  # one float32 score matrix would not fit


def test_splash_in_interpret_mode_equals_xla():
  """384 tokens with the default 256 blocks: splash runs blocks that divide the row (128)."""
  q, k, v, segments = _packed(2, 384, 4, 2, 64)
  valid = np.asarray(segments) > 0
  out_x, grads_x = _forward_and_grads("xla", q, k, v, segments, block_q=256, block_kv=256)
  out_s, grads_s = _forward_and_grads("splash", q, k, v, segments, block_q=256, block_kv=256)
  assert _relative(np.asarray(out_x)[valid], np.asarray(out_s)[valid]) <= 1e-5
  for gx, gs in zip(grads_x, grads_s):
    assert _relative(gx, gs) <= 1e-4


def _windowed_reference(q, k, v, segments, window):
  """Causal sliding-window attention by loops in float64: query i sees keys j of its own
  document with i - window < j <= i."""
  q, k, v, segments = (np.asarray(x, np.float64) for x in (q, k, v, segments))
  b, t, h, d = q.shape
  group = h // k.shape[2]
  out = np.zeros_like(q)
  for r in range(b):
    for i in range(t):
      keys = [j for j in range(max(0, i - window + 1), i + 1)
              if segments[r, j] == segments[r, i] != 0]
      for head in range(h):
        if not keys:
          continue
        scores = k[r, keys, head // group] @ q[r, i, head] / np.sqrt(d)
        p = np.exp(scores - scores.max())
        out[r, i, head] = (p / p.sum()) @ v[r, keys, head // group]
  return out


@pytest.mark.parametrize("window,block_q,block_kv", [(5, 32, 16), (40, 32, 32), (130, 64, 64)])
def test_every_kernel_honours_a_sliding_window_on_packed_rows(window, block_q, block_kv):
  """Rows of 96 tokens packing three documents, windows shorter and longer than the blocks
  (flash skips the blocks a window leaves out) and than a document."""
  q, k, v, segments = _packed(3, 96, 4, 2, 16)
  valid = np.asarray(segments) > 0
  expected = _windowed_reference(q, k, v, segments, window)[valid]
  out_x, grads_x = _forward_and_grads("xla", q, k, v, segments, True, window=window)
  out_f, grads_f = _forward_and_grads("flash", q, k, v, segments, True, block_q, block_kv,
                                      window)
  assert _relative(expected, np.asarray(out_x)[valid]) <= 1e-5
  assert _relative(expected, np.asarray(out_f)[valid]) <= 1e-5
  for gx, gf in zip(grads_x, grads_f):
    assert _relative(gx, gf) <= 1e-4


def test_splash_in_interpret_mode_honours_a_sliding_window():
  q, k, v, segments = _packed(2, 256, 4, 2, 64)
  valid = np.asarray(segments) > 0
  expected = _windowed_reference(q, k, v, segments, 40)[valid]
  out_x, grads_x = _forward_and_grads("xla", q, k, v, segments, window=40)
  out_s, grads_s = _forward_and_grads("splash", q, k, v, segments, True, 128, 128, 40)
  assert _relative(expected, np.asarray(out_s)[valid]) <= 1e-5
  for gx, gs in zip(grads_x, grads_s):
    assert _relative(gx, gs) <= 1e-4


def test_splash_under_shard_map_on_an_8_device_mesh():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  result = subprocess.run([sys.executable, "-m", "tests.helpers.splash_mesh_worker"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "splash on mesh" in result.stdout and "trainer with splash" in result.stdout


@pytest.mark.parametrize("implementation", ["flash", "xla"])
def test_decoder_logits_do_not_depend_on_the_kernel(implementation):
  config = ModelConfig(family="qwen3", vocab_size=97, hidden_size=64, intermediate_size=128,
                       num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                       attention=implementation, attention_block_q=32, attention_block_kv=32)
  reference = Decoder(config.replace(attention="xla"), nnx.Rngs(0))
  model = Decoder(config, nnx.Rngs(0))
  _, _, _, segments = _packed(3, 100, 1, 1, 1)
  ids = jnp.asarray(np.random.default_rng(1).integers(0, 97, (3, 100)), jnp.int32)
  positions = jnp.asarray(np.tile(np.arange(100), (3, 1)), jnp.int32)
  args = dict(attention_mask=(segments > 0).astype(jnp.int32), positions=positions,
              segment_ids=segments)
  valid = np.asarray(segments) > 0
  assert _relative(np.asarray(reference(ids, **args))[valid],
                   np.asarray(model(ids, **args))[valid]) <= 1e-5


def test_auto_picks_by_backend_and_length_on_cpu():
  assert attention.resolve("auto", jnp.float32, 64, 256, 256) == "flash"
  assert attention.resolve("auto", jnp.float32, 64, 4096, 4096) == "flash"
  assert attention.resolve("auto", jnp.float32, 64, 1, 4096) == "xla"  # decoding
  assert attention.resolve("splash", jnp.float32, 64, 1, 300) == "flash"  # needs t == s
  assert attention.resolve("cudnn", jnp.bfloat16, 64, 256, 256) == "cudnn"
