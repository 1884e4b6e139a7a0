"""Pairs/s of RewardModel.score_batch vs the official-style PyTorch scoring loop.

  python bench/score_throughput.py --arch=small --pairs=64 --batch=16 --max_len=512

Both sides score the same random-token pairs with the same random weights (exported once to
an HF directory), both orders, softmax over the two label logits at the last position. The
PyTorch side follows the official evaluation script: transformers, left padding, batches of
`--batch` prompts, no_grad. Prints one JSON object, including the largest score difference.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_pairs(count: int, seed: int) -> list[tuple[str, str, str]]:
  import random
  rng = random.Random(seed)
  words = "the answer is paris capital of france four two plus better worse because".split()
  text = lambda n: " ".join(rng.choice(words) for _ in range(n))
  return [(text(rng.randint(10, 40)), text(rng.randint(20, 200)), text(rng.randint(20, 200)))
          for _ in range(count)]


def torch_scores(path: str, pairs, batch: int, max_len: int) -> tuple[float, Any]:
  import numpy as np
  import torch
  import transformers
  from gram_jax.text import tokenizer as tok
  from gram_jax.data.encode import JudgeEncoder
  from gram_jax.inference.scorer import both_order_scores, swapped
  cuda = torch.cuda.is_available()
  dtype = torch.bfloat16 if cuda else torch.float32
  model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
  model = model.to("cuda" if cuda else "cpu")
  tokenizer = transformers.AutoTokenizer.from_pretrained(path)
  tokenizer.padding_side = "left"
  encoder = JudgeEncoder(tokenizer, max_len)
  a_id, b_id = tok.label_token_ids(tokenizer)
  triples = list(pairs) + swapped(pairs)
  texts = [encoder.text(*t) for t in triples]
  start = time.perf_counter()
  probs = []
  with torch.no_grad():
    for i in range(0, len(texts), batch):
      inputs = tokenizer(texts[i:i + batch], return_tensors="pt", padding=True,
                         add_special_tokens=False).to(model.device)
      logits = model(**inputs).logits[:, -1, [a_id, b_id]].float()
      probs.append(torch.softmax(logits, -1).cpu().numpy())
  seconds = time.perf_counter() - start
  probs = np.concatenate(probs)
  return seconds, both_order_scores(probs[:len(pairs)], probs[len(pairs):])


def torch_peak_gb() -> float | None:
  import torch
  return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="small")
  parser.add_argument("--pairs", type=int, default=64)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--max_len", type=int, default=1024)
  args = parser.parse_args()
  import jax
  import numpy as np
  from flax import nnx
  import gram_jax
  from gram_jax.data import synthetic
  from gram_jax.text import templates
  from gram_jax.text import tokenizer as tok
  from gram_jax.models.config import architecture
  from gram_jax.models.decoder import Decoder
  from gram_jax.inference.reward import RewardModel
  on_cpu = jax.default_backend() == "cpu"
  pairs = random_pairs(args.pairs, seed=0)
  texts = [t for p in pairs for t in p] + [templates.GRAM_JUDGE_PROMPT] * 5
  tokenizer = tok.train_bpe_tokenizer(texts + list(synthetic.corpus(synthetic.make_pairs(50, 0))),
                                      vocab_size=1024)
  model_config = architecture(args.arch, vocab_size=len(tokenizer),
                              dtype="float32" if on_cpu else "bfloat16",
                              param_dtype="float32" if on_cpu else "bfloat16")
  model = Decoder(model_config, nnx.Rngs(0))
  with tempfile.TemporaryDirectory() as path:
    gram_jax.save_pretrained(model, path, tokenizer=tokenizer)
    reward = RewardModel(model, tokenizer, max_len=args.max_len, batch_size=args.batch)
    reward.score_batch(pairs)  # compile every bucket shape once
    start = time.perf_counter()
    ours = reward.score_batch(pairs)
    jax_seconds = time.perf_counter() - start
    torch_seconds, theirs = torch_scores(path, pairs, args.batch, args.max_len)
  both_orders = list(pairs) + [(p, b, a) for p, a, b in pairs]
  tokens = sum(map(len, reward.encoder.encode_many(both_orders)[0]))
  stats = None if on_cpu else jax.devices()[0].memory_stats()
  report = {"arch": args.arch, "pairs": args.pairs, "batch": args.batch,
            "device": jax.devices()[0].device_kind, "prompt_tokens": tokens,
            "gram_jax_pairs_per_second": args.pairs / jax_seconds,
            "gram_jax_tokens_per_second": tokens / jax_seconds,
            "gram_jax_peak_memory_gb": stats["peak_bytes_in_use"] / 1e9 if stats else None,
            "torch_pairs_per_second": args.pairs / torch_seconds,
            "torch_peak_memory_gb": torch_peak_gb(),
            "speedup": torch_seconds / jax_seconds,
            "max_abs_score_difference": float(np.abs(ours - theirs).max())}
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
