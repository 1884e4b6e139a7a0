"""Training objectives. Each returns (sum of per-unit losses, number of units), so gradient
accumulation can normalise over the whole global batch, not per micro-batch."""
import jax
import jax.numpy as jnp
import optax

from gram_jax.models.decoder import Decoder, verdict_logits

Batch = dict[str, jnp.ndarray]


def causal_lm_loss(model: Decoder, batch: Batch) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Token-level next-token cross-entropy on trained (unmasked) target tokens."""
  logits = model(batch["input_ids"], positions=batch["positions"],
                 segment_ids=batch["segment_ids"])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  mask = batch["target_mask"].astype(jnp.float32)
  return jnp.sum(losses * mask), jnp.sum(mask)


def label_smoothed_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                                 smoothing: float) -> jnp.ndarray:
  """Per-example CE with PyTorch's `label_smoothing`: target (1 - ε) one_hot + ε / classes."""
  classes = logits.shape[-1]
  targets = (1.0 - smoothing) * jax.nn.one_hot(labels, classes) + smoothing / classes
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def verdict_loss(model: Decoder, batch: Batch, label_ids: tuple[int, ...],
                 smoothing: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """GRAM stage-2 loss (official `gram_loss`), summed over real (weight 1) rows."""
  logits = verdict_logits(model, batch["input_ids"], batch["attention_mask"], label_ids)
  losses = label_smoothed_cross_entropy(logits, batch["labels"], smoothing)
  weights = batch["weights"].astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(weights)
