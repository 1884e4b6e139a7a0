"""Generated tokens/s of gram_jax's Generator vs transformers generate() on the same model.

  python bench/generate_throughput.py --arch=small --batch=16 --prompt=128 --new=128

Same random weights (exported once), same batch of random prompts of varied lengths, greedy
decoding with EOS disabled so both produce exactly --new tokens a row. Prints one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="small")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--prompt", type=int, default=128)
  parser.add_argument("--new", type=int, default=128)
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
  generator.generate(prompts, args.new)  # compile
  start = time.perf_counter()
  ours = generator.generate(prompts, args.new)
  jax_seconds = time.perf_counter() - start
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
  kwargs = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                pad_token_id=0, eos_token_id=None)
  hf.generate(input_ids=ids[:, -8:], attention_mask=mask[:, -8:], max_new_tokens=2,
              do_sample=False, pad_token_id=0)
  start = time.perf_counter()
  with torch.no_grad():
    out = hf.generate(input_ids=ids, attention_mask=mask, **kwargs)
  torch_seconds = time.perf_counter() - start
  same = np.mean([g.token_ids == out[r, width:].tolist() for r, g in enumerate(ours)])
  tokens = args.batch * args.new
  print(json.dumps({
      "arch": args.arch, "batch": args.batch, "prompt_max": args.prompt, "new": args.new,
      "device": jax.devices()[0].device_kind,
      "gram_jax_tokens_per_second": tokens / jax_seconds,
      "transformers_tokens_per_second": tokens / torch_seconds,
      "speedup": torch_seconds / jax_seconds,
      "rows_token_identical": float(same)}, indent=2))


if __name__ == "__main__":
  main()
