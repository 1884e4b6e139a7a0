"""Training objectives. Each returns (sum of per-unit losses, number of units), so gradient
accumulation can normalise over the whole global batch, not per micro-batch."""
import jax
import jax.numpy as jnp

from gram_jax.models.decoder import Decoder, project

Batch = dict[str, jnp.ndarray]


def causal_lm_loss(model: Decoder, batch: Batch,
                   chunk_len: int = 0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Token-level next-token cross-entropy on trained (unmasked) target tokens; with
  chunk_len, computed `chunk_len` positions at a time (see `token_cross_entropy`)."""
  hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"],
                               segment_ids=batch["segment_ids"])
  losses = token_cross_entropy(hidden, model.head(hidden.dtype), batch["targets"], chunk_len)
  mask = batch["target_mask"].astype(jnp.float32)
  return jnp.sum(losses * mask), jnp.sum(mask)


def token_cross_entropy(hidden: jnp.ndarray, head: jnp.ndarray, targets: jnp.ndarray,
                        chunk_len: int = 0) -> jnp.ndarray:
  """Per-token CE [b, t] of the logits hidden @ head against targets.

  With chunk_len > 0 the [b, t, vocab] logits never exist at once: a scan projects
  `chunk_len` positions of every row at a time (float32 log-sum-exp over the whole
  vocabulary) and recomputes that chunk's logits in the backward pass, so the loss holds
  b x chunk_len x vocab floats instead of b x t x vocab (Llama-3: 128,256 a position). The
  sequence, not the vocabulary, is cut, so a vocabulary-sharded head needs no gathering.
  """
  def chunk_losses(h: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    logits = project(h, head)
    picked = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked

  b, t = targets.shape
  if not chunk_len or chunk_len >= t:
    return chunk_losses(hidden, targets)
  chunks = -(-t // chunk_len)
  pad = chunks * chunk_len - t
  hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
  targets = jnp.pad(targets, ((0, 0), (0, pad)))
  as_chunks = lambda x: jnp.moveaxis(x.reshape(b, chunks, chunk_len, *x.shape[2:]), 1, 0)
  body = jax.checkpoint(lambda _, xs: (None, chunk_losses(*xs)))
  _, losses = jax.lax.scan(body, None, (as_chunks(hidden), as_chunks(targets)))
  return jnp.moveaxis(losses, 0, 1).reshape(b, chunks * chunk_len)[:, :t]


def label_smoothed_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                                 smoothing: float) -> jnp.ndarray:
  """Per-example CE with PyTorch's `label_smoothing`: target (1 - ε) one_hot + ε / classes."""
  classes = logits.shape[-1]
  targets = (1.0 - smoothing) * jax.nn.one_hot(labels, classes) + smoothing / classes
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def verdict_loss(model: Decoder, batch: Batch, label_ids: tuple[int, ...],
                 smoothing: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """GRAM stage-2 loss (official `gram_loss`) over the judging prompts of (packed) rows,
  read at each prompt's `verdict_index`, summed over real (weight 1) slots."""
  hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"],
                               segment_ids=batch["segment_ids"])
  at_verdicts = jnp.take_along_axis(hidden, batch["verdict_index"][..., None], axis=1)
  logits = model.label_logits(at_verdicts, label_ids)
  losses = label_smoothed_cross_entropy(logits, batch["labels"], smoothing)
  weights = batch["weights"].astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(weights)
