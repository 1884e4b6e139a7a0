"""Load test of the reward server on loopback: concurrent clients, checked answers, latency.

  python bench/serve_load.py --clients=32 --seconds=30

Starts the server in this process on a free loopback port with a random model (a tiny
Qwen3-shaped one by default), precomputes direct `RewardModel.score_batch` scores for a pool
of pairs (and times them: the in-process peer), then runs `--clients` aiohttp clients for `--seconds`: each posts 1-4 random pairs
to /score and checks every returned score against the direct one. Prints one JSON object.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def client(url: str, pool: list, expected, deadline: float, seed: int, stats: dict):
  import aiohttp
  import numpy as np
  rng = random.Random(seed)
  async with aiohttp.ClientSession() as session:
    while time.monotonic() < deadline:
      picks = [rng.randrange(len(pool)) for _ in range(rng.randint(1, 4))]
      body = {"pairs": [dict(zip(("prompt", "response_a", "response_b"), pool[i]))
                        for i in picks]}
      start = time.perf_counter()
      try:
        async with session.post(url + "/score", json=body) as response:
          answer = await response.json()
          ok = response.status == 200
      except aiohttp.ClientError:
        ok, answer = False, None
      stats["latencies"].append(time.perf_counter() - start)
      if not ok:
        stats["errors"] += 1
        continue
      stats["pairs"] += len(picks)
      if not np.allclose(answer["scores"], expected[picks], atol=1e-5):
        stats["wrong"] += 1


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--clients", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=30)
  parser.add_argument("--arch", default="tiny")
  parser.add_argument("--pool", type=int, default=64)
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
  from gram_jax.inference.serve_util import serve_in_background
  from gram_jax.inference.server import Limits, RewardServer
  pool = [(p["prompt"], p["chosen"], p["rejected"]) for p in synthetic.make_pairs(args.pool, 0)]
  tokenizer = tok.train_bpe_tokenizer(list(synthetic.corpus(synthetic.make_pairs(200, 1))) +
                                      [templates.COMPACT_JUDGE_PROMPT] * 3, vocab_size=1024)
  model_config = architecture(args.arch, vocab_size=len(tokenizer))
  with tempfile.TemporaryDirectory() as path:
    gram_jax.save_pretrained(Decoder(model_config, nnx.Rngs(0)), path, tokenizer=tokenizer)
    reward = RewardModel.from_pretrained(path, max_len=256, batch_size=16,
                                         template=templates.COMPACT_JUDGE_PROMPT)
  compile_start = time.perf_counter()
  shapes = reward.warm_up()
  compile_seconds = time.perf_counter() - compile_start
  expected = reward.score_batch(pool)
  direct_start = time.perf_counter()
  for _ in range(3):
    reward.score_batch(pool)
  direct_pairs_per_second = 3 * len(pool) / (time.perf_counter() - direct_start)
  server = serve_in_background(RewardServer(reward, Limits(max_batch_pairs=32, max_wait_ms=5)))
  stats = {"latencies": [], "errors": 0, "wrong": 0, "pairs": 0}
  deadline = time.monotonic() + args.seconds
  start = time.perf_counter()

  async def load():
    await asyncio.gather(*[client(server.url, pool, expected, deadline, seed, stats)
                           for seed in range(args.clients)])
  asyncio.run(load())
  seconds = time.perf_counter() - start
  server.stop()
  latencies = np.array(stats["latencies"]) * 1000
  print(json.dumps({
      "device": jax.devices()[0].device_kind, "arch": args.arch, "params": model_config.num_params(),
      "clients": args.clients, "seconds": round(seconds, 1), "requests": len(latencies),
      "pairs": stats["pairs"], "errors": stats["errors"], "wrong_scores": stats["wrong"],
      "requests_per_second": len(latencies) / seconds, "pairs_per_second": stats["pairs"] / seconds,
      "direct_score_batch_pairs_per_second": direct_pairs_per_second,
      "latency_ms_p50": float(np.percentile(latencies, 50)),
      "latency_ms_p99": float(np.percentile(latencies, 99)),
      "warm_up_shapes": shapes, "warm_up_seconds": round(compile_seconds, 1)}, indent=2))


if __name__ == "__main__":
  main()
