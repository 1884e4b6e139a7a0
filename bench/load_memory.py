"""Peak host memory while importing an HF checkpoint, as a ratio to the checkpoint size.

  python bench/load_memory.py [--hidden=1024 --layers=8 --vocab=32000]

Builds a random Llama checkpoint (~0.6 GB float32) with transformers, then loads it in fresh
processes with gram_jax.load_pretrained and, as the peer, transformers' from_pretrained, and
samples each process's RSS every 2 ms. Prints one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

_MEASURE = r"""
import json, os, sys, threading, time, psutil
loader = sys.argv[1]; path = sys.argv[2]
proc = psutil.Process()
if loader == "gram_jax":
  import jax, gram_jax
  jax.devices()
  load = lambda: gram_jax.load_pretrained(path)
elif loader == "copy+gram_jax":  # bench/remote_load.py's peer: copy to disk, then load
  import tempfile, fsspec, jax, gram_jax
  jax.devices()
  local = tempfile.mkdtemp()
  def load():
    fsspec.filesystem(path.split("://")[0]).get(path + "/", local, recursive=True)
    return gram_jax.load_pretrained(local)
else:
  import torch, transformers
  load = lambda: transformers.AutoModelForCausalLM.from_pretrained(path, dtype="auto")
baseline = proc.memory_info().rss
peak = [baseline]
done = threading.Event()
def sample():
  while not done.is_set():
    peak[0] = max(peak[0], proc.memory_info().rss)
    time.sleep(0.002)
thread = threading.Thread(target=sample); thread.start()
start = time.time()
model = load()
if loader != "transformers":
  import jax
  jax.block_until_ready(jax.tree.leaves(__import__("flax").nnx.state(model)))
seconds = time.time() - start
done.set(); thread.join()
peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({"baseline_rss": baseline, "peak_rss": peak[0], "seconds": seconds}))
"""


def build_checkpoint(path: str, hidden: int, layers: int, vocab: int, intermediate: int = 0,
                     dtype: str = "float32") -> int:
  import torch
  import transformers
  config = transformers.LlamaConfig(
      vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or hidden * 11 // 4,
      num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=4,
      tie_word_embeddings=False)
  torch.manual_seed(0)
  transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)
                                                ).save_pretrained(path)
  return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
             if f.endswith(".safetensors"))


def measure(loader: str, path: str) -> dict:
  out = subprocess.run([sys.executable, "-c", _MEASURE, loader, path], check=True,
                       capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return json.loads(out.stdout.strip().splitlines()[-1])


def checkpoint_shape() -> argparse.Namespace:
  """--hidden/--layers/--vocab of the random checkpoint (shared with bench/remote_load.py)."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--hidden", type=int, default=1024)
  parser.add_argument("--layers", type=int, default=8)
  parser.add_argument("--vocab", type=int, default=32000)
  parser.add_argument("--intermediate", type=int, default=0, help="0: hidden * 11 / 4")
  parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 (8B: bfloat16)")
  return parser.parse_args()


def main() -> None:
  args = checkpoint_shape()
  with tempfile.TemporaryDirectory() as path:
    size = build_checkpoint(path, args.hidden, args.layers, args.vocab, args.intermediate,
                            args.dtype)
    report = {"checkpoint_bytes": size}
    for loader in ("gram_jax", "transformers"):
      result = measure(loader, path)
      growth = result["peak_rss"] - result["baseline_rss"]
      report[loader] = {"peak_rss_growth_bytes": growth, "ratio_to_checkpoint": growth / size,
                        "seconds": round(result["seconds"], 2)}
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
