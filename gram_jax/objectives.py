"""Training objectives. Each returns (sum of per-unit losses, number of units), so gradient
accumulation can normalise over the whole global batch, not per micro-batch."""
import jax.numpy as jnp
import optax

from gram_jax.models.decoder import Decoder

Batch = dict[str, jnp.ndarray]


def causal_lm_loss(model: Decoder, batch: Batch) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Token-level next-token cross-entropy on trained (unmasked) target tokens."""
  logits = model(batch["input_ids"], positions=batch["positions"],
                 segment_ids=batch["segment_ids"])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  mask = batch["target_mask"].astype(jnp.float32)
  return jnp.sum(losses * mask), jnp.sum(mask)
