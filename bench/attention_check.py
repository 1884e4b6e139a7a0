"""cuDNN flash attention vs XLA attention in the decoder: forward and gradients (GPU only).

  python bench/attention_check.py

Runs a small bf16 decoder on packed, causally masked rows (segment ids) with both
implementations and prints the relative differences of logits and parameter gradients.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from gram_jax.models.config import ModelConfig
  from gram_jax.models.decoder import Decoder
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 1000, (4, 256)).astype(np.int32)
  segments = np.ones((4, 256), np.int32)
  segments[:, 100:] = 2   # two documents packed in each row
  segments[1, 200:] = 0   # tail padding
  report = {"device": jax.devices()[0].device_kind}
  results = {}
  for impl in ("xla", "cudnn"):
    model_config = ModelConfig(family="llama", vocab_size=1000, hidden_size=256,
                               intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2,
                               head_dim=64, qk_norm=False, dtype="bfloat16", attention=impl)
    model = Decoder(model_config, nnx.Rngs(0))
    graphdef, params = nnx.split(model)

    def loss(p):
      m = nnx.merge(graphdef, p)
      logits = m(ids, attention_mask=(segments > 0).astype(np.int32), segment_ids=segments)
      return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * (segments > 0)), logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    results[impl] = (np.asarray(logits, np.float32), jax.tree.leaves(grads))
  (lx, gx), (lc, gc) = results["xla"], results["cudnn"]
  rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(a))
  valid = segments > 0
  report["logits_rel_diff"] = rel(lx[valid], lc[valid])
  report["grad_rel_diff_max"] = max(rel(np.asarray(a, np.float32), np.asarray(b, np.float32))
                                    for a, b in zip(gx, gc))
  report["finite"] = bool(np.isfinite(lc).all() and all(np.isfinite(g).all() for g in gc))
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
