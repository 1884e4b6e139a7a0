"""Peak memory of the LM loss with and without vocabulary chunking, from XLA's own buffer
assignment: nothing is allocated, so an 8 x 2,048 x 151,936 case compiles on a laptop.

  python bench/loss_memory.py --batch=8 --seq=2048 --chunks=0,512,128

Per architecture and chunk length (0 = the full [batch, seq, vocab] logits): the value and
gradient of the token cross-entropy w.r.t. hidden states and LM head, at the architecture's
hidden size and vocabulary (bf16 activations and head, float32 logits). Peak = arguments +
outputs - aliased + temporaries, as `memory_analysis()` reports. The whole train step is not
measured this way: the CPU backend's plan for it (no flash attention, its own scheduling)
says nothing about a GPU's; bench/train_throughput.py reads the device's peak there.
Prints one JSON object.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from gram_jax.models.config import architecture  # noqa: E402
from gram_jax.training import chunked_loss  # noqa: E402


def _peak_gb(compiled) -> dict:
  m = compiled.memory_analysis()
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)
  return {"peak_gb": peak / 1e9, "temp_gb": m.temp_size_in_bytes / 1e9}


def loss_memory(arch: str, batch: int, seq: int, chunk_len: int) -> dict:
  config = architecture(arch)
  hidden = jax.ShapeDtypeStruct((batch, seq, config.hidden_size), jnp.bfloat16)
  head = jax.ShapeDtypeStruct((config.hidden_size, config.vocab_size), jnp.bfloat16)
  targets = jax.ShapeDtypeStruct((batch, seq), jnp.int32)

  def loss(h, w, y):
    if chunk_len:
      return chunked_loss.chunked_cross_entropy_sum(h, w, y, jnp.ones(y.shape), chunk_len)
    return jnp.sum(chunked_loss.token_cross_entropy(h, w, y))

  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(
      hidden, head, targets).compile()
  return {"arch": arch, "vocab": config.vocab_size, "chunk_len": chunk_len, **_peak_gb(compiled)}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--loss_archs", default="llama3.2-1b,qwen3-1.7b,llama3.1-8b")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=2048)
  parser.add_argument("--chunks", default="0,512")
  args = parser.parse_args()
  chunks = [int(c) for c in args.chunks.split(",")]
  report = {"backend": jax.default_backend(), "jax": jax.__version__, "batch": args.batch,
            "seq": args.seq, "loss": []}
  for arch in filter(None, args.loss_archs.split(",")):
    for chunk in chunks:
      report["loss"].append(loss_memory(arch, args.batch, args.seq, chunk))
      print(json.dumps(report["loss"][-1]), file=sys.stderr, flush=True)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
