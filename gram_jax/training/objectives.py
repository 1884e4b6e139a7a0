"""Training objectives. Each returns (sum of per-unit losses, number of units), so gradient
accumulation can normalise over the whole global batch, not per micro-batch."""
import jax
import jax.numpy as jnp

from gram_jax.models.decoder import Decoder
from gram_jax.training.chunked_loss import chunked_cross_entropy_sum, token_cross_entropy

Batch = dict[str, jnp.ndarray]


def causal_lm_loss(model: Decoder, batch: Batch,
                   chunk_len: int = 0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Token-level next-token cross-entropy on trained (unmasked) target tokens; with
  chunk_len, without ever holding [batch, seq, vocab] logits (training/chunked_loss.py)."""
  hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"],
                               segment_ids=batch["segment_ids"])
  head = model.head(hidden.dtype)
  mask = batch["target_mask"].astype(jnp.float32)
  if chunk_len and chunk_len < hidden.shape[1]:
    summed = chunked_cross_entropy_sum(hidden, head, batch["targets"], mask, chunk_len)
  else:
    summed = jnp.sum(token_cross_entropy(hidden, head, batch["targets"]) * mask)
  return summed, jnp.sum(mask)


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
