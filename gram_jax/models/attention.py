"""Attention over packed rows: one interface, a kernel per backend.

Every kernel applies one rule, given by segment ids rather than a dense bias: query i attends
key j when both carry the same nonzero segment id (0 = padding, never attended) and, if causal,
j <= i + q_offset (q_offset places the queries in the key sequence: the KV-cache index when
decoding), and with a sliding window w (Gemma 3's local layers), j > i + q_offset - w. A query that may attend nothing (padding) gets zeros from the blockwise kernels and
an arbitrary finite row from XLA; no valid position ever reads it.

Kernels, chosen by `model.attention`:
- xla: `jax.nn.dot_product_attention` with a boolean mask; the [t, s] scores are materialised.
- flash: blockwise attention in JAX with an online softmax over kv blocks; blocks above the
  diagonal or whose segments cannot meet are skipped; a custom VJP recomputes each block, so
  memory is linear in the sequence. Runs on every backend (CPU's default wherever the queries
  span the keys: training, prefill and scoring).
- splash: Pallas splash attention (TPU) with `SegmentIds` and causal block skipping, under
  `shard_map` over the ambient mesh (batch over data/fsdp, heads over tensor). On CPU it runs
  in Pallas interpret mode (tests only: slow).
- cudnn: cuDNN flash attention (GPU, bf16/f16) through `jax.nn.dot_product_attention`; it has no
  packed-segment input there, so segments still travel as a dense bias.

Decoding has its own kernel, `decode_attention`: one new token per row over a head-major KV
cache that is split into the prompts' keys (shared by every sample of a prompt) and each row's
own generated keys.
"""
import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

IMPLEMENTATIONS = ("auto", "xla", "flash", "splash", "cudnn")
_MASKED = -1e30  # a masked score in the flash kernel: finite, so no inf - inf = NaN
_CUDNN_MASKED = -2.0 ** 40  # cuDNN mishandles the difference of two huge negatives


def resolve(implementation: str, dtype, head_dim: int, t: int, s: int) -> str:
  """The kernel `implementation` means for t queries over s keys on this backend: splash and
  cudnn need queries that span the keys (else flash); auto picks per backend.

  On CPU auto takes flash whenever the queries span the keys (measured faster than XLA's dense
  scores from 256 tokens up, and linear in memory: BENCHMARKS.md) and XLA's dense scores for
  decoding, where a few queries read the KV cache and the scores are [t, s] with t small.
  """
  full_sequence = t == s
  if implementation != "auto":
    return implementation if full_sequence or implementation in ("xla", "flash") else "flash"
  backend = jax.default_backend()
  if backend == "tpu" and full_sequence:
    return "splash"
  if (backend == "gpu" and full_sequence and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
      and head_dim % 8 == 0 and head_dim <= 128):
    return "cudnn"
  return "flash" if full_sequence else "xla"


def allowed(q_segments: jax.Array, kv_segments: jax.Array, causal: bool,
            q_offset: jax.Array | int = 0, window: int = 0) -> jax.Array:
  """Which keys each query may attend, [batch, t, s] booleans (the rule above; window 0:
  none)."""
  ok = (q_segments[:, :, None] == kv_segments[:, None, :]) & (kv_segments[:, None, :] != 0)
  q_index = jnp.arange(q_segments.shape[1])[:, None] + q_offset
  kv_index = jnp.arange(kv_segments.shape[1])[None, :]
  if causal:
    ok &= kv_index <= q_index
  if window:
    ok &= kv_index > q_index - window
  return ok


# Jitted so that its trace is made once per shape and reused by every layer: tracing the
# flash kernel once per layer was two thirds of tracing a SmolLM2 readout (a server warms
# 40 such shapes: 0.94 -> 0.31 s a shape, BENCHMARKS.md). XLA inlines the call.
@functools.partial(jax.jit, static_argnames=("causal", "implementation", "block_q", "block_kv",
                                             "window"))
def attention(q: jax.Array, k: jax.Array, v: jax.Array, q_segments: jax.Array,
              kv_segments: jax.Array, *, causal: bool = True, q_offset: jax.Array | int = 0,
              implementation: str = "auto", block_q: int = 256,
              block_kv: int = 256, window: int = 0) -> jax.Array:
  """Softmax attention of q [b, t, h, d] over k, v [b, s, kv_heads, d] (grouped heads);
  `window` > 0 limits each query to its last `window` keys (itself included)."""
  impl = resolve(implementation, q.dtype, q.shape[-1], q.shape[1], k.shape[1])
  if impl == "flash":
    return flash_attention(q, k, v, q_segments, kv_segments, jnp.asarray(q_offset, jnp.int32),
                           causal, block_q, block_kv, window)
  if impl == "splash":
    return splash_attention(q, k, v, q_segments, kv_segments, causal, block_q, block_kv,
                            window)
  mask = allowed(q_segments, kv_segments, causal, q_offset, window)[:, None]
  if impl == "cudnn":
    bias = jnp.where(mask, 0.0, _CUDNN_MASKED).astype(q.dtype)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=causal,
                                        implementation="cudnn")
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def decode_attention(q: jax.Array, prefix_k: jax.Array, prefix_v: jax.Array,
                     prefix_ok: jax.Array, suffix_k: jax.Array, suffix_v: jax.Array,
                     suffix_ok: jax.Array) -> jax.Array:
  """One query per row, q [rows, 1, h, d], over its prompt's cache prefix_k/v [prompts,
  kv_heads, p, d] (rows = prompts x samples, a prompt's samples adjacent) and its own
  generated keys suffix_k/v [rows, kv_heads, s, d]; prefix_ok [prompts, p] (or per sample,
  [prompts, samples, p]) and suffix_ok [rows, s] mark the keys a row may attend. Returns
  [rows, 1, h, d].

  The caches are head-major so each product reads them in place as a batched matmul (XLA
  copies a [batch, seq, heads, d] cache whole into head-major order at every step: at 1,024 +
  512 tokens the small shape's decode step fell from 44.1 to 24.5 ms on CPU, BENCHMARKS.md),
  and the samples of a prompt read its keys once, as one product (their queries stacked).
  One softmax spans both parts.
  """
  rows, _, h, d = q.shape
  prompts, kv = prefix_k.shape[:2]
  samples, group = rows // prompts, h // kv
  f32 = jnp.float32
  # Queries as [prompts, samples, kv, group, d], and for the prompt's keys [prompts, kv,
  # samples x group, d]: each product is then a plain batched matmul over leading axes
  # (XLA:CPU runs a product whose batch axes are not leading at half the speed, measured).
  qs = (q.reshape(prompts, samples, kv, group, d) / math.sqrt(d)).astype(prefix_k.dtype)
  stacked = qs.transpose(0, 2, 1, 3, 4).reshape(prompts, kv, samples * group, d)
  from_prompt = jnp.einsum("pkmd,pktd->pkmt", stacked, prefix_k, preferred_element_type=f32)
  from_prompt = from_prompt.reshape(prompts, kv, samples, group, -1).transpose(0, 2, 1, 3, 4)
  prefix_ok = prefix_ok.reshape(prompts, -1, 1, 1, prefix_ok.shape[-1])  # [p, s or 1, ...]
  from_prompt = jnp.where(prefix_ok, from_prompt, _MASKED)
  own_shape = (prompts, samples, kv, suffix_k.shape[2], d)
  from_own = jnp.einsum("pskgd,psktd->pskgt", qs, suffix_k.reshape(own_shape),
                        preferred_element_type=f32)
  from_own = jnp.where(suffix_ok.reshape(prompts, samples, 1, 1, -1), from_own, _MASKED)
  top = jnp.maximum(from_prompt.max(-1, keepdims=True), from_own.max(-1, keepdims=True))
  w_prompt, w_own = jnp.exp(from_prompt - top), jnp.exp(from_own - top)
  total = w_prompt.sum(-1, keepdims=True) + w_own.sum(-1, keepdims=True)
  w_prompt = w_prompt.transpose(0, 2, 1, 3, 4).reshape(prompts, kv, samples * group, -1)
  out_prompt = jnp.einsum("pkmt,pktd->pkmd", w_prompt.astype(prefix_v.dtype), prefix_v,
                          preferred_element_type=f32)
  out_prompt = out_prompt.reshape(prompts, kv, samples, group, d).transpose(0, 2, 1, 3, 4)
  out_own = jnp.einsum("pskgt,psktd->pskgd", w_own.astype(suffix_v.dtype),
                       suffix_v.reshape(own_shape), preferred_element_type=f32)
  return ((out_prompt + out_own) / total).reshape(rows, 1, h, d).astype(q.dtype)


# --- flash: blockwise attention in JAX ------------------------------------------------------

def _pad_to(x: jax.Array, multiple: int, axis: int = 1) -> jax.Array:
  pad = -x.shape[axis] % multiple
  if not pad:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def _segment_ranges(segments: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
  """Smallest and largest nonzero segment id of each block, [blocks, batch]."""
  b, n = segments.shape
  blocks = segments.reshape(b, n // block, block)
  big = jnp.iinfo(jnp.int32).max
  low = jnp.min(jnp.where(blocks > 0, blocks, big), axis=-1)
  high = jnp.max(blocks, axis=-1)
  return low.T, high.T


class _Blocks:
  """The padded, blocked operands of one flash call and the rule of which blocks can meet."""

  def __init__(self, q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv,
               window):
    self.t, self.s = q.shape[1], k.shape[1]
    self.bq, self.bk = min(block_q, self.t), min(block_kv, self.s)
    self.causal, self.q_offset, self.window = causal, q_offset, window
    b, _, h, d = q.shape
    self.kv_heads = k.shape[2]
    self.group = h // self.kv_heads
    self.scale = 1.0 / math.sqrt(d)
    # Head-major layouts, once: every block product is then a plain batched matmul.
    self.q = _pad_to(q, self.bq).reshape(b, -1, self.kv_heads, self.group, d)
    self.q = self.q.transpose(0, 2, 3, 1, 4)  # [b, kv, g, t, d]
    self.k = _pad_to(k, self.bk).transpose(0, 2, 1, 3)  # [b, kv, s, d]
    self.v = _pad_to(v, self.bk).transpose(0, 2, 1, 3)
    self.q_segments = _pad_to(q_segments.astype(jnp.int32), self.bq)
    self.kv_segments = _pad_to(kv_segments.astype(jnp.int32), self.bk)
    self.n_q, self.n_kv = self.q.shape[3] // self.bq, self.k.shape[2] // self.bk
    self.q_ranges = _segment_ranges(self.q_segments, self.bq)
    self.kv_ranges = _segment_ranges(self.kv_segments, self.bk)

  def kv_blocks_of(self, i):
    """The kv blocks query block i may see: [start, end)."""
    first_query = self.q_offset + i * self.bq
    start = jnp.clip((first_query - self.window + 1) // self.bk, 0, self.n_kv) if self.window \
        else 0
    if not self.causal:
      return start, self.n_kv
    return start, jnp.clip((first_query + self.bq - 1) // self.bk + 1, 0, self.n_kv)

  def q_blocks_of(self, j):
    """The query blocks that may see kv block j: [start, end)."""
    start = jnp.clip((j * self.bk - self.q_offset) // self.bq, 0, self.n_q) if self.causal \
        else 0
    if not self.window:
      return start, self.n_q
    last_query = (j + 1) * self.bk - 1 + self.window - 1 - self.q_offset
    return start, jnp.clip(last_query // self.bq + 1, 0, self.n_q)

  def meet(self, i, j) -> jax.Array:
    """Whether any row's query block i and kv block j share a segment (else skip them)."""
    q_low, q_high = self.q_ranges[0][i], self.q_ranges[1][i]
    kv_low, kv_high = self.kv_ranges[0][j], self.kv_ranges[1][j]
    return jnp.any((q_low <= kv_high) & (kv_low <= q_high))

  def block(self, i, j):
    """Query block i's q [b, kv, g, bq, d], kv block j's k, v [b, kv, bk, d] and the mask
    [b, 1, 1, bq, bk]."""
    q = jax.lax.dynamic_slice_in_dim(self.q, i * self.bq, self.bq, axis=3)
    k = jax.lax.dynamic_slice_in_dim(self.k, j * self.bk, self.bk, axis=2)
    v = jax.lax.dynamic_slice_in_dim(self.v, j * self.bk, self.bk, axis=2)
    q_seg = jax.lax.dynamic_slice_in_dim(self.q_segments, i * self.bq, self.bq, axis=1)
    kv_seg = jax.lax.dynamic_slice_in_dim(self.kv_segments, j * self.bk, self.bk, axis=1)
    offset = i * self.bq + self.q_offset - j * self.bk  # the block's queries among its keys
    return q, k, v, allowed(q_seg, kv_seg, self.causal, offset, self.window)[:, None, None]

  def scores(self, q, k, ok):
    s = jnp.einsum("bhgqd,bhkd->bhgqk", q, k, preferred_element_type=jnp.float32)
    return jnp.where(ok, s * self.scale, _MASKED)


def _flash_forward(blocks: _Blocks) -> tuple[jax.Array, jax.Array]:
  """Output [b, kv, g, t_padded, d] (float32) and log-sum-exp [b, kv, g, t_padded]."""
  b, d = blocks.q.shape[0], blocks.q.shape[-1]
  shape = (b, blocks.kv_heads, blocks.group, blocks.bq)

  def query_block(i):
    def visit(j, carry):
      def compute(carry):
        acc, m, l = carry
        q, k, v, ok = blocks.block(i, j)
        s = blocks.scores(q, k, ok)
        m_new = jnp.maximum(m, jnp.max(s, axis=-1))
        # Rows with nothing to attend yet keep m at _MASKED: shifting them by 0 instead sends
        # their masked scores to exp(_MASKED) = 0, with no second pass to zero them.
        shift = jnp.where(m_new > _MASKED, m_new, 0.0)
        p = jnp.exp(s - shift[..., None])
        correction = jnp.exp(m - shift)
        pv = jnp.einsum("bhgqk,bhkd->bhgqd", p.astype(v.dtype), v,
                        preferred_element_type=jnp.float32)
        return acc * correction[..., None] + pv, m_new, l * correction + jnp.sum(p, axis=-1)
      return jax.lax.cond(blocks.meet(i, j), compute, lambda c: c, carry)

    init = (jnp.zeros(shape + (d,), jnp.float32), jnp.full(shape, _MASKED, jnp.float32),
            jnp.zeros(shape, jnp.float32))
    acc, m, l = jax.lax.fori_loop(*blocks.kv_blocks_of(i), visit, init)
    seen = l > 0
    safe = jnp.where(seen, l, 1.0)
    return acc / safe[..., None], jnp.where(seen, m + jnp.log(safe), 0.0)

  out, lse = jax.lax.map(query_block, jnp.arange(blocks.n_q))  # [n_q, b, kv, g, bq, ...]
  out = jnp.moveaxis(out, 0, 3).reshape(b, blocks.kv_heads, blocks.group, -1, d)
  lse = jnp.moveaxis(lse, 0, 3).reshape(b, blocks.kv_heads, blocks.group, -1)
  return out, lse


def _flash_backward(blocks: _Blocks, out, lse, d_out):
  """Gradients of q [b, kv, g, t, d] and k, v [b, kv, s, d], recomputing each block's
  probabilities from the saved log-sum-exp.

  Each block is computed keys-major (scores [k, g, q]), so every product that reads a
  block-sized array reads it in the layout it was written in: XLA:CPU otherwise transposes
  the probabilities and score gradients of every block before the dk and dv products. dq is
  accumulated transposed ([b, kv, d, g, t]) for the same reason.
  """
  delta = jnp.sum(out * d_out, axis=-1)

  def kv_block(dq_t, j):
    def visit(i, carry):
      def compute(carry):
        dq_t, dk, dv = carry
        q, k, v, ok = blocks.block(i, j)
        q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
        start = i * blocks.bq
        lse_i = jax.lax.dynamic_slice_in_dim(lse, start, blocks.bq, axis=-1)[:, :, None]
        delta_i = jax.lax.dynamic_slice_in_dim(delta, start, blocks.bq, axis=-1)[:, :, None]
        do = jax.lax.dynamic_slice_in_dim(d_out, start, blocks.bq, axis=3)
        ok_t = jnp.moveaxis(ok, -1, 2)  # [b, 1, bk, 1, bq]
        s_t = jnp.einsum("bhkd,bhgqd->bhkgq", k, q) * blocks.scale
        p_t = jnp.exp(jnp.where(ok_t, s_t - lse_i, _MASKED))
        dv = dv + jnp.einsum("bhkgq,bhgqd->bhkd", p_t, do)
        dp_t = jnp.einsum("bhkd,bhgqd->bhkgq", v, do)
        ds_t = p_t * (dp_t - delta_i) * blocks.scale
        dk = dk + jnp.einsum("bhkgq,bhgqd->bhkd", ds_t, q)
        dq_i = jax.lax.dynamic_slice_in_dim(dq_t, start, blocks.bq, axis=4)
        dq_i = dq_i + jnp.einsum("bhkd,bhkgq->bhdgq", k, ds_t)
        return jax.lax.dynamic_update_slice_in_dim(dq_t, dq_i, start, axis=4), dk, dv
      return jax.lax.cond(blocks.meet(i, j), compute, lambda c: c, carry)

    kv_shape = blocks.k.shape[:2] + (blocks.bk, blocks.k.shape[-1])
    init = (dq_t, jnp.zeros(kv_shape, jnp.float32), jnp.zeros(kv_shape, jnp.float32))
    dq_t, dk, dv = jax.lax.fori_loop(*blocks.q_blocks_of(j), visit, init)
    return dq_t, (dk, dv)

  b, kv_heads, group, t, d = blocks.q.shape
  dq_t, (dk, dv) = jax.lax.scan(kv_block, jnp.zeros((b, kv_heads, d, group, t), jnp.float32),
                                jnp.arange(blocks.n_kv))  # dk, dv: [n_kv, b, kv, bk, d]
  dk = jnp.moveaxis(dk, 0, 2).reshape(blocks.k.shape)
  dv = jnp.moveaxis(dv, 0, 2).reshape(blocks.k.shape)
  return jnp.moveaxis(dq_t, 2, -1), dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9))
def flash_attention(q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv,
                    window=0):
  """Blockwise attention; see the module docstring for the rule and the skipping."""
  return _flash(q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv,
                window)[0]


def _flash(q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv, window):
  blocks = _Blocks(q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv,
                   window)
  out, lse = _flash_forward(blocks)
  b, t, h, d = q.shape
  result = out.transpose(0, 3, 1, 2, 4).reshape(b, -1, h, d)[:, :t].astype(q.dtype)
  return result, (q, k, v, q_segments, kv_segments, q_offset, out, lse)


def _flash_bwd(causal, block_q, block_kv, window, residuals, d_result):
  q, k, v, q_segments, kv_segments, q_offset, out, lse = residuals
  blocks = _Blocks(q, k, v, q_segments, kv_segments, q_offset, causal, block_q, block_kv,
                   window)
  b, t, h, d = q.shape
  d_out = _pad_to(d_result.astype(jnp.float32), blocks.bq)
  d_out = d_out.reshape(b, -1, blocks.kv_heads, blocks.group, d).transpose(0, 2, 3, 1, 4)
  dq, dk, dv = _flash_backward(blocks, out, lse, d_out)
  dq = dq.transpose(0, 3, 1, 2, 4).reshape(b, -1, h, d)[:, :t].astype(q.dtype)
  s = k.shape[1]
  dk, dv = (x.transpose(0, 2, 1, 3)[:, :s].astype(k.dtype) for x in (dk, dv))
  return dq, dk, dv, None, None, None


flash_attention.defvjp(_flash, _flash_bwd)


# --- splash: Pallas TPU kernel -------------------------------------------------------------

def _splash_kernel(t: int, s: int, group: int, causal: bool, block_q: int, block_kv: int,
                   interpret: bool, window: int = 0):
  from jax.experimental.pallas.ops.tpu.splash_attention import (
      splash_attention_kernel as splash, splash_attention_mask as masks)
  if window:  # keys (q - window, q] when causal, else (q - window, q + window)
    head_mask = masks.LocalMask((t, s), (window - 1, 0 if causal else window - 1), 0)
  else:
    head_mask = masks.CausalMask((t, s)) if causal else masks.FullMask((t, s))
  # Splash needs blocks that divide the sequence: a 384-token row with 256 blocks runs 128s.
  bq, bk = math.gcd(block_q, t), math.gcd(block_kv, s)
  sizes = splash.BlockSizes(block_q=bq, block_kv=bk, block_kv_compute=bk, block_q_dkv=bq,
                            block_kv_dkv=bk, block_kv_dkv_compute=bk, block_q_dq=bq,
                            block_kv_dq=bk)
  kernel = splash.make_splash_mqa_single_device(
      mask=masks.MultiHeadMask([head_mask] * group), block_sizes=sizes, interpret=interpret)
  return kernel, splash.SegmentIds


def _splash_local(q, k, v, q_segments, kv_segments, causal, block_q, block_kv, window):
  """Splash on one device's shard: q [b, t, h, d], k, v [b, s, kv, d]."""
  b, t, h, d = q.shape
  kv_heads = k.shape[2]
  kernel, segment_ids = _splash_kernel(t, k.shape[1], h // kv_heads, causal, block_q, block_kv,
                                       interpret=jax.default_backend() != "tpu", window=window)
  # MQA kernel per kv head: q [group, t, d] against k, v [s, d]; splash does not scale q.
  q = (q / math.sqrt(d)).reshape(b, t, kv_heads, h // kv_heads, d).transpose(0, 2, 3, 1, 4)
  k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

  def one_row(q, k, v, q_seg, kv_seg):
    ids = segment_ids(q=q_seg, kv=kv_seg)
    return jax.vmap(lambda q, k, v: kernel(q, k, v, segment_ids=ids))(q, k, v)

  out = jax.vmap(one_row)(q, k, v, q_segments.astype(jnp.int32), kv_segments.astype(jnp.int32))
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


def splash_attention(q, k, v, q_segments, kv_segments, causal, block_q, block_kv, window=0):
  """Splash under shard_map over the ambient mesh (`jax.set_mesh`), if one is set."""
  local = functools.partial(_splash_local, causal=causal, block_q=block_q, block_kv=block_kv,
                            window=window)
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return local(q, k, v, q_segments, kv_segments)
  names = mesh.axis_names
  batch = tuple(a for a in ("data", "fsdp") if a in names) or None
  heads = "tensor" if "tensor" in names and k.shape[2] % mesh.shape["tensor"] == 0 else None
  qkv, segments = P(batch, None, heads, None), P(batch, None)
  return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, segments, segments),
                       out_specs=qkv, check_vma=False)(q, k, v, q_segments, kv_segments)

