"""Every attention kernel against XLA in the decoder, and attention alone timed against peers.

  python bench/attention_check.py                      # kernels this backend runs
  python bench/attention_check.py --seq=8192 --time    # + fwd+bwd timing, torch sdpa, tokamax

Correctness: a small decoder on packed, causally masked rows (segment ids, tail padding) runs
with each kernel; prints the relative differences of logits and parameter gradients to XLA.
Kernels: xla and flash everywhere, cudnn on GPU (bf16), splash on TPU (and on CPU in Pallas
interpret mode with --interpret). Timing (--time): one causal attention, forward + backward,
of [1, seq, 4 heads, 32] over 2 kv heads (the tiny shape of bench/train_throughput.py), for
each kernel, tokamax's xla_chunked (if installed) and torch's scaled_dot_product_attention.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kernels(interpret: bool) -> list[str]:
  import jax
  backend = jax.default_backend()
  names = ["xla", "flash"]
  if backend == "gpu":
    names.append("cudnn")
  if backend == "tpu" or (backend == "cpu" and interpret):
    names.append("splash")
  return names


def check_decoder(names: list[str]) -> dict:
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
  dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  results = {}
  for impl in names:
    model_config = ModelConfig(family="llama", vocab_size=1000, hidden_size=256,
                               intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2,
                               head_dim=64, qk_norm=False, dtype=dtype, attention=impl)
    graphdef, params = nnx.split(Decoder(model_config, nnx.Rngs(0)))

    def loss(p):
      m = nnx.merge(graphdef, p)
      logits = m(ids, attention_mask=(segments > 0).astype(np.int32), segment_ids=segments)
      return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * (segments > 0)), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    results[impl] = (np.asarray(logits, np.float32), jax.tree.leaves(grads))
  rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(a))
  valid = segments > 0
  lx, gx = results["xla"]
  report = {}
  for impl in names[1:]:
    lk, gk = results[impl]
    report[impl] = {
        "logits_rel_diff": rel(lx[valid], lk[valid]),
        "grad_rel_diff_max": max(rel(np.asarray(a, np.float32), np.asarray(b, np.float32))
                                 for a, b in zip(gx, gk)),
        "finite": bool(np.isfinite(lk).all() and all(np.isfinite(g).all() for g in gk))}
  return report


def _seconds(fn, repeats: int) -> float:
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def time_attention(names: list[str], seq: int, repeats: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from gram_jax.models import attention
  rng = np.random.default_rng(0)
  # cuDNN takes fp16/bf16/fp8 only ("Q must be fp16/bf16/fp8"): bf16 off the CPU, as models run
  dtype = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
  q, k, v = (jnp.asarray(rng.normal(size=(1, seq, n, 32)), dtype) for n in (4, 2, 2))
  segments = jnp.ones((1, seq), jnp.int32)
  runs = {impl: (lambda impl: lambda q, k, v: attention.attention(
      q, k, v, segments, segments, implementation=impl))(impl) for impl in names}
  try:
    import tokamax
    from absl import flags
    flags.FLAGS(sys.argv[:1])  # tokamax reads absl flags at call time; ours are argparse's
    runs["tokamax xla_chunked"] = lambda q, k, v: tokamax.dot_product_attention(
        q, k, v, is_causal=True, implementation="xla_chunked")
  except ImportError:
    pass
  timings = {}
  for name, run in runs.items():
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(run(q, k, v)), argnums=(0, 1, 2)))
    timings[name] = _seconds(lambda: jax.block_until_ready(grad(q, k, v)), repeats)
  try:
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = torch.float32 if dtype == jnp.float32 else torch.bfloat16
    qt, kt, vt = (torch.tensor(np.asarray(x, np.float32), dtype=torch_dtype, device=device)
                  .transpose(1, 2).requires_grad_() for x in (q, k, v))

    def torch_step():
      out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True,
                                                             enable_gqa=True)
      out.float().sum().backward()
      if device == "cuda":
        torch.cuda.synchronize()
    timings["torch sdpa"] = _seconds(torch_step, repeats)
  except ImportError:
    pass
  return {"seq": seq, "dtype": jnp.dtype(dtype).name, "fwd_bwd_seconds": timings}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--interpret", action="store_true",
                      help="on CPU, also run splash in Pallas interpret mode (slow)")
  parser.add_argument("--time", action="store_true", help="time attention alone vs peers")
  parser.add_argument("--seq", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  import jax
  names = kernels(args.interpret)
  report = {"device": jax.devices()[0].device_kind, "jax": jax.__version__,
            "against_xla": check_decoder(names)}
  if args.time:
    report["timing"] = time_attention([n for n in names if n != "splash" or
                                       jax.default_backend() == "tpu"], args.seq, args.repeats)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
