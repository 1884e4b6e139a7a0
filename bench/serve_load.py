"""Load test of the reward server on loopback: concurrent clients, checked answers, latency;
then an overload: open-loop arrivals at a multiple of the measured sustainable rate.

  python bench/serve_load.py --clients=32 --seconds=30 --overload_factor=3 --overload_seconds=30

Starts the server in this process on a free loopback port with a random model (a tiny
Qwen3-shaped one by default), precomputes direct `RewardModel.score_batch` scores for a pool
of pairs (and times them: the in-process peer), then runs `--clients` aiohttp clients for
`--seconds`: each posts 1-4 random pairs to /score and checks every returned score against
the direct one. The pairs/s they reach is the sustainable rate. The overload phase then
sends requests on a fixed schedule (not waiting for answers) at `--overload_factor` times
that rate for `--overload_seconds`, with a `--deadline` per request: it counts 200s (each
checked), 503s (each must carry Retry-After), the longest wait, the deepest queue and the
process's memory; a closed-loop phase right after must see no error. Prints one JSON object.
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


def rss_mb() -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


async def overload(url: str, pool: list, expected, rate: float, seconds: float, server,
                   stats: dict) -> None:
  """Posts one 2-pair request every 1/rate s for `seconds`, whatever the answers."""
  import aiohttp
  import numpy as np
  rng = random.Random(7)

  async def one(picks):
    body = {"pairs": [dict(zip(("prompt", "response_a", "response_b"), pool[i]))
                      for i in picks]}
    start = time.perf_counter()
    async with session.post(url + "/score", json=body) as response:
      answer = await response.json()
      stats["waits"].append(time.perf_counter() - start)
      stats[response.status] = stats.get(response.status, 0) + 1
      if response.status == 503 and "Retry-After" not in response.headers:
        stats["503_without_retry_after"] += 1
      if response.status == 200 and not np.allclose(answer["scores"], expected[picks],
                                                    atol=1e-5):
        stats["wrong"] += 1

  async def watch():
    while not done.is_set():
      stats["max_queue_pairs_seen"] = max(stats["max_queue_pairs_seen"],
                                          server.batcher.queued_pairs)
      stats["peak_rss_mb"] = max(stats["peak_rss_mb"], rss_mb())
      await asyncio.sleep(0.1)

  done = asyncio.Event()
  connector = aiohttp.TCPConnector(limit=0)
  async with aiohttp.ClientSession(connector=connector) as session:
    watcher = asyncio.create_task(watch())
    tasks, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
      tasks.append(asyncio.create_task(one([rng.randrange(len(pool)) for _ in range(2)])))
      await asyncio.sleep(max(0.0, start + len(tasks) / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    done.set()
    await watcher


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--clients", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=30)
  parser.add_argument("--arch", default="tiny")
  parser.add_argument("--pool", type=int, default=64)
  parser.add_argument("--overload_factor", type=float, default=3.0)
  parser.add_argument("--overload_seconds", type=float, default=30)
  parser.add_argument("--deadline", type=float, default=2.0, help="request_timeout_s")
  parser.add_argument("--max_queue_pairs", type=int, default=256)
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
  from gram_jax.inference.request_parsing import Limits
  from gram_jax.inference.server import RewardServer
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
  server = RewardServer(reward, Limits(max_batch_pairs=32, max_wait_ms=5,
                                       request_timeout_s=args.deadline,
                                       max_queue_pairs=args.max_queue_pairs))
  running = serve_in_background(server)

  def closed_loop(seconds: float) -> dict:
    stats = {"latencies": [], "errors": 0, "wrong": 0, "pairs": 0}
    deadline = time.monotonic() + seconds
    start = time.perf_counter()

    async def load():
      await asyncio.gather(*[client(running.url, pool, expected, deadline, seed, stats)
                             for seed in range(args.clients)])
    asyncio.run(load())
    stats["seconds"] = time.perf_counter() - start
    return stats

  steady = closed_loop(args.seconds)
  latencies = np.array(steady["latencies"]) * 1000
  sustainable = steady["pairs"] / steady["seconds"]
  rss_before = rss_mb()
  rate = args.overload_factor * sustainable / 2  # requests/s of 2 pairs
  heavy = {"waits": [], "wrong": 0, "503_without_retry_after": 0, "max_queue_pairs_seen": 0,
           "peak_rss_mb": rss_before}
  asyncio.run(overload(running.url, pool, expected, rate, args.overload_seconds, server, heavy))
  after = closed_loop(5)
  running.stop()
  waits = np.array(heavy["waits"])
  print(json.dumps({
      "device": jax.devices()[0].device_kind, "arch": args.arch,
      "params": model_config.num_params(), "clients": args.clients, "seconds": round(steady["seconds"], 1),
      "requests": len(latencies), "pairs": steady["pairs"], "errors": steady["errors"],
      "wrong_scores": steady["wrong"], "requests_per_second": len(latencies) / steady["seconds"],
      "pairs_per_second": sustainable,
      "direct_score_batch_pairs_per_second": direct_pairs_per_second,
      "latency_ms_p50": float(np.percentile(latencies, 50)),
      "latency_ms_p99": float(np.percentile(latencies, 99)),
      "warm_up_shapes": shapes, "warm_up_seconds": round(compile_seconds, 1),
      "overload": {
          "offered_pairs_per_second": 2 * rate, "seconds": args.overload_seconds,
          "deadline_s": args.deadline, "max_queue_pairs": args.max_queue_pairs,
          "requests": len(waits), "ok": heavy.get(200, 0), "refused_503": heavy.get(503, 0),
          "other_status": len(waits) - heavy.get(200, 0) - heavy.get(503, 0),
          "503_without_retry_after": heavy["503_without_retry_after"],
          "wrong_scores": heavy["wrong"],
          "served_pairs_per_second": 2 * heavy.get(200, 0) / args.overload_seconds,
          "longest_wait_s": float(waits.max()), "wait_s_p99": float(np.percentile(waits, 99)),
          "max_queue_pairs_seen": heavy["max_queue_pairs_seen"],
          "rss_mb_before": round(rss_before, 1), "rss_mb_peak": round(heavy["peak_rss_mb"], 1)},
      "after_overload": {"seconds": 5, "requests": len(after["latencies"]),
                         "errors": after["errors"], "wrong_scores": after["wrong"],
                         "pairs_per_second": after["pairs"] / after["seconds"]},
  }, indent=2))


if __name__ == "__main__":
  main()
