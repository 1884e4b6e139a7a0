"""Next-token cross-entropy over a large vocabulary without [batch, seq, vocab] logits.

The weighted sum of per-token CE of `hidden @ head` is computed `chunk_len` positions of every
row at a time, and each chunk's gradient (softmax - one-hot, times the token's weight) is
turned into the hidden-state and head gradients in the same pass: the logits of a chunk live
only inside one scan iteration and are never recomputed, so the loss costs the three matmuls
of the plain version (forward, d hidden, d head) and holds batch x chunk_len x vocab floats
instead of batch x seq x vocab (Llama-3: 128,256 a position; Qwen3: 151,936). The sequence,
not the vocabulary, is cut, so a vocabulary-sharded head needs no gathering.
"""
from functools import partial

import jax
import jax.numpy as jnp

from gram_jax.models.decoder import project


def token_cross_entropy(hidden: jnp.ndarray, head: jnp.ndarray,
                        targets: jnp.ndarray) -> jnp.ndarray:
  """Per-token CE [b, t] of the float32 logits hidden @ head against targets."""
  logits = project(hidden, head)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - picked


def _as_chunks(x: jnp.ndarray, chunk_len: int) -> jnp.ndarray:
  """[b, t, ...] -> [t / chunk_len, b, chunk_len, ...], zero-padding t up to a multiple."""
  b, t = x.shape[:2]
  chunks = -(-t // chunk_len)
  x = jnp.pad(x, [(0, 0), (0, chunks * chunk_len - t)] + [(0, 0)] * (x.ndim - 2))
  return jnp.moveaxis(x.reshape(b, chunks, chunk_len, *x.shape[2:]), 1, 0)


def _from_chunks(x: jnp.ndarray, t: int) -> jnp.ndarray:
  chunks, b, chunk_len = x.shape[:3]
  return jnp.moveaxis(x, 0, 1).reshape(b, chunks * chunk_len, *x.shape[3:])[:, :t]


def _loss_and_grads(hidden, head, targets, weights, chunk_len):
  """The forward pass under differentiation: the loss, and its gradients for the backward."""
  def chunk(carry, xs):
    loss_sum, head_grad = carry
    h, y, w = xs
    logits = project(h, head)
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    loss_sum += jnp.sum(w * (lse - picked))
    softmax = jnp.exp(logits - lse[..., None])
    d_logits = ((softmax - jax.nn.one_hot(y, logits.shape[-1], dtype=softmax.dtype))
                * w[..., None]).astype(h.dtype)
    h_grad = jnp.einsum("bcv,ev->bce", d_logits, head)
    head_grad += jnp.einsum("bce,bcv->ev", h, d_logits, preferred_element_type=jnp.float32)
    return (loss_sum, head_grad), h_grad

  init = (jnp.zeros((), jnp.float32), jnp.zeros(head.shape, jnp.float32))
  xs = (_as_chunks(hidden, chunk_len), _as_chunks(targets, chunk_len),
        _as_chunks(weights.astype(jnp.float32), chunk_len))
  (loss_sum, head_grad), h_grads = jax.lax.scan(chunk, init, xs)
  return loss_sum, (_from_chunks(h_grads, hidden.shape[1]), head_grad.astype(head.dtype))


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def chunked_cross_entropy_sum(hidden: jnp.ndarray, head: jnp.ndarray, targets: jnp.ndarray,
                              weights: jnp.ndarray, chunk_len: int) -> jnp.ndarray:
  """sum(weights * CE(hidden @ head, targets)), `chunk_len` positions of each row at a time.
  Differentiable in hidden and head (targets and weights are data)."""
  def chunk(loss_sum, xs):
    h, y, w = xs
    return loss_sum + jnp.sum(w * token_cross_entropy(h, head, y)), None

  xs = (_as_chunks(hidden, chunk_len), _as_chunks(targets, chunk_len),
        _as_chunks(weights.astype(jnp.float32), chunk_len))
  return jax.lax.scan(chunk, jnp.zeros((), jnp.float32), xs)[0]


def _backward(chunk_len, grads, upstream):
  h_grad, head_grad = grads
  return ((upstream * h_grad).astype(h_grad.dtype),
          (upstream * head_grad).astype(head_grad.dtype), None, None)


chunked_cross_entropy_sum.defvjp(_loss_and_grads, _backward)
