"""Generated tokens/s of gram_jax's Generator vs transformers generate(), plain and with a
static KV cache and a `torch.compile`d forward (the recipe transformers documents for fast
generation), and the share of the memory-bandwidth bound each one's decode reaches.

  python bench/generate_throughput.py --arch=small --batch=16 --prompt=128 --new=128
  python bench/generate_throughput.py --arch=llama3.1-8b --batch=64 --prompt=512 --new=256

Same random weights (exported once), same batch of random prompts of varied lengths, greedy
decoding with EOS disabled so every side produces exactly --new tokens a row. Decode speed is
(time for --new tokens - time for 1 token) / (--new - 1) steps; a step must read every weight
once and the KV cache of the positions filled so far, so the bound is those bytes over the
memory bandwidth (the GPU's HBM figure; on CPU a bandwidth measured in the same run by copying
1 GiB). Prints one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


HBM_BYTES_PER_SECOND = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def host_copy_bandwidth() -> float:
  """Bytes/s that one large numpy copy moves (read + write), best of 3."""
  import numpy as np
  a, b = np.ones(1 << 28, np.float32), np.empty(1 << 28, np.float32)
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    np.copyto(b, a)
    best = min(best, time.perf_counter() - start)
  return 2 * a.nbytes / best


def decode_step_bytes(model_config, batch: int, prompt_tokens: float, new: int,
                      bytes_per_value: int) -> float:
  """Weights once plus the K and V of the average filled length, per decode step."""
  kv = 2 * model_config.num_layers * model_config.num_kv_heads * model_config.head_dim
  filled = prompt_tokens + new / 2
  return (model_config.num_params() + batch * filled * kv) * bytes_per_value


def decode_seconds_per_step(run, new: int) -> float:
  run(1), run(new)  # warm both lengths
  start = time.perf_counter()
  run(1)
  one = time.perf_counter() - start
  start = time.perf_counter()
  run(new)
  return (time.perf_counter() - start - one) / (new - 1)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="small")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--prompt", type=int, default=128)
  parser.add_argument("--new", type=int, default=128)
  parser.add_argument("--peers", default="transformers,transformers_static_compiled",
                      help="comma-separated peers to measure")
  args = parser.parse_args()
  import jax
  import numpy as np
  import torch
  import transformers
  from flax import nnx
  import gram_jax
  from gram_jax.data import synthetic
  from gram_jax.text import tokenizer as tok
  from gram_jax.inference.generate import Generator
  from gram_jax.models.config import architecture
  from gram_jax.models.decoder import Decoder
  on_cpu = jax.default_backend() == "cpu"
  tokenizer = tok.train_bpe_tokenizer(synthetic.corpus(synthetic.make_pairs(200, 0)), 1024)
  dtype = "float32" if on_cpu else "bfloat16"
  model_config = architecture(args.arch, vocab_size=len(tokenizer), dtype=dtype,
                              param_dtype=dtype, eos_token_id=None)
  model = Decoder(model_config, nnx.Rngs(0))
  rng = np.random.default_rng(0)
  prompts = [rng.integers(10, model_config.vocab_size, rng.integers(args.prompt // 2, args.prompt + 1))
             .tolist() for _ in range(args.batch)]
  tokenizer.eos_token = None
  generator = Generator(model, tokenizer, batch_size=args.batch, max_prompt_len=args.prompt)
  generator.eos_ids = ()
  gram_run = lambda n: generator.generate(prompts, n)
  gram_run(args.new)  # compile
  start = time.perf_counter()
  ours = gram_run(args.new)
  jax_seconds = time.perf_counter() - start
  gram_step = decode_seconds_per_step(gram_run, args.new)
  with tempfile.TemporaryDirectory() as path:
    gram_jax.save_pretrained(model, path)
    cuda = torch.cuda.is_available()
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if cuda else torch.float32).eval().to(
            "cuda" if cuda else "cpu")
  width = max(map(len, prompts))
  ids = torch.zeros((args.batch, width), dtype=torch.long)
  mask = torch.zeros_like(ids)
  for r, p in enumerate(prompts):
    ids[r, width - len(p):] = torch.tensor(p)
    mask[r, width - len(p):] = 1
  ids, mask = ids.to(hf.device), mask.to(hf.device)
  sync = torch.cuda.synchronize if cuda else (lambda: None)

  def hf_run(n: int, **extra):
    with torch.no_grad():
      out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, pad_token_id=0, eos_token_id=None, **extra)
    sync()
    return out

  peers = {}
  for name, extra in (("transformers", {}),
                      ("transformers_static_compiled", {"cache_implementation": "static"})):
    if name not in args.peers.split(","):
      continue
    if extra:
      hf.forward = torch.compile(hf.forward, mode="reduce-overhead" if cuda else "default",
                                 fullgraph=True)
    hf_run(args.new, **extra)  # warm-up (compiles the static-cache graphs)
    start = time.perf_counter()
    out = hf_run(args.new, **extra)
    seconds = time.perf_counter() - start
    peers[name] = {"tokens_per_second": args.batch * args.new / seconds,
                   "decode_step_seconds": decode_seconds_per_step(
                       lambda n: hf_run(n, **extra), args.new),
                   "rows_token_identical": float(np.mean(
                       [g.token_ids == out[r, width:].tolist() for r, g in enumerate(ours)]))}
  kind = jax.devices()[0].device_kind
  bandwidth = next((v for k, v in HBM_BYTES_PER_SECOND.items() if k in kind), None)
  bandwidth_source = "HBM spec" if bandwidth else "host copy, measured"
  bandwidth = bandwidth or host_copy_bandwidth()
  step_bytes = decode_step_bytes(model_config, args.batch, np.mean(list(map(len, prompts))),
                                 args.new, 4 if on_cpu else 2)
  bound = lambda seconds: step_bytes / seconds / bandwidth
  tokens = args.batch * args.new
  from gram_jax import provenance
  report = {"arch": args.arch, "params": model_config.num_params(), "batch": args.batch,
            "prompt_max": args.prompt, "new": args.new, "device": kind,
            "versions": {"jax": jax.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
            "commit": provenance.current_code_version(), "bandwidth_bytes_per_second": bandwidth,
            "bandwidth_source": bandwidth_source, "decode_step_bytes": step_bytes,
            "gram_jax": {"tokens_per_second": tokens / jax_seconds,
                         "decode_step_seconds": gram_step,
                         "decode_bandwidth_share": bound(gram_step)}}
  for name, peer in peers.items():
    report[name] = {**peer, "decode_bandwidth_share": bound(peer["decode_step_seconds"])}
    report[f"speedup_vs_{name}"] = (report["gram_jax"]["tokens_per_second"] /
                                    peer["tokens_per_second"])
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
