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
process's memory; a closed-loop phase right after must see no error. Four attack phases
follow, each with the same valid clients for `--attack_seconds` while `/health` is probed
every 0.1 s, the attacker in a process of its own: `idle_sockets` keeps
max_connections + 64 sockets open from another address (127.0.0.2) that never send a byte
(reopening each one the server closes) while the valid clients open a connection per
request, `kept_alive_sockets` does the same with max_connections_per_peer sockets from each
of 127.0.0.2 and 127.0.0.3 that each sent one `GET /health` and stay open (keep-alive),
`compile_storm` posts chat requests that each need a new compiled shape (n, max_tokens,
stop-table width, greedy or sampled), 2 a second, and
`pathological_bodies` has 4 attackers posting, in turn, unclosed chat markup at
max_text_chars, a 4 MB body whose pairs are over max_input_tokens, 400-digit integers,
JSON nested 20,000 deep, lone surrogates and a body over max_body_bytes (each must be a
4xx), `--attack_rate` a second. The valid clients' pairs/s is compared with a phase of the
same length and connection use without attack. Prints one JSON object.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def client(url: str, pool: list, expected, deadline: float, seed: int, stats: dict,
                 new_connections: bool = False):
  """`new_connections`: a connection per request (the worst case while slots are
  contended), else keep-alive."""
  import aiohttp
  import numpy as np
  rng = random.Random(seed)
  connector = aiohttp.TCPConnector(force_close=new_connections)
  async with aiohttp.ClientSession(connector=connector) as session:
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


async def health_probe(url: str, stop: asyncio.Event, stats: dict,
                       new_connections: bool) -> None:
  """GETs /health every 0.1 s; records each answer's latency (a failure counts 5 s)."""
  import aiohttp
  connector = aiohttp.TCPConnector(force_close=new_connections)
  async with aiohttp.ClientSession(connector=connector) as session:
    while not stop.is_set():
      start = time.perf_counter()
      try:
        async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
          await r.read()
          ok = r.status == 200
      except (aiohttp.ClientError, asyncio.TimeoutError):
        ok = False
      stats["health_s"].append(time.perf_counter() - start if ok else 5.0)
      stats["health_failed"] += not ok
      await asyncio.sleep(0.1)


async def _notice_closed(held: list) -> None:
  """Reads what each held socket got (a refusal's 503), so a socket the server closed shows
  at_eof; then waits a moment before the next round."""
  for reader, _ in held:
    if not reader.at_eof():
      try:
        await asyncio.wait_for(reader.read(65536), 0.001)
      except (asyncio.TimeoutError, OSError):
        pass
  await asyncio.sleep(0.05)


async def kept_alive_sockets(port: int, per_address: int, stop: asyncio.Event,
                             stats: dict) -> None:
  """Holds `per_address` connections from each of 127.0.0.2 and 127.0.0.3 that each sent one
  `GET /health`, read its answer and stay open (HTTP/1.1 keep-alive), reopening each one the
  server closes: no key is needed, and the first request makes a connection more than an
  idle socket."""
  async def one(address: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(address, 0))
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await asyncio.wait_for(reader.readexactly(length), 10)
    return reader, writer

  held = []
  while not stop.is_set():
    held = [(r, w) for r, w in held if not r.at_eof()]
    stats["reopened"] += max(0, 2 * per_address - len(held)) if stats["opened"] else 0
    for address in ("127.0.0.2", "127.0.0.3"):
      for _ in range(per_address - sum(w.get_extra_info("sockname")[0] == address
                                       for _, w in held)):
        try:
          held.append(await one(address))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, StopIteration,
                ValueError):
          break  # refused (503) or closed: tried again next round
        stats["opened"] += 1
    await _notice_closed(held)
  for _, writer in held:
    writer.close()


async def idle_sockets(port: int, count: int, stop: asyncio.Event, stats: dict) -> None:
  """Holds `count` connections that never send a byte, reopening each one the server
  closes, from 127.0.0.2: another address, as a remote attacker's would be."""
  held = []
  while not stop.is_set():
    held = [(r, w) for r, w in held if not r.at_eof()]
    stats["reopened"] += max(0, count - len(held)) if stats["opened"] else 0
    while len(held) < count:
      try:
        held.append(await asyncio.open_connection("127.0.0.1", port,
                                                  local_addr=("127.0.0.2", 0)))
      except OSError:
        break
      stats["opened"] += 1
    await _notice_closed(held)
  for _, writer in held:
    writer.close()


def pathological_bodies(limits) -> list[tuple[str, str, bytes]]:
  """(name, path, body): requests that were slow to refuse or broke the server before."""
  markup = "<|im_start|>a\n" * (limits.max_text_chars // 14)
  header = "<|start_header_id|>user<|end_header_id|>\n\n" * (limits.max_text_chars // 45)
  per_text = (limits.max_body_bytes - 2000) // 3 // 14
  big = {"pairs": [{"prompt": header[:per_text], "response_a": markup[:per_text],
                    "response_b": "x " * (per_text // 2)} for _ in range(14)]}
  return [
      ("unclosed_markup", "/group_reward",
       json.dumps({"prompt": markup, "completions": ["yes", "no"]}).encode()),
      ("4mb_over_long_pairs", "/score", json.dumps(big).encode()),
      ("400_digit_integer", "/v1/chat/completions", json.dumps(
          {"messages": [{"role": "user", "content": "hi"}], "n": 10 ** 400}).encode()),
      ("nested_20000", "/score", b"[" * 20_000),
      ("lone_surrogate", "/score",
       b'{"pairs": [{"prompt": "q", "response_a": "\\ud83d", "response_b": "b"}]}'),
      ("over_max_body", "/score", b"{" + b" " * (limits.max_body_bytes + 10) + b"}")]


async def send_pathological(url: str, bodies: list, stop: asyncio.Event, seed: int,
                            rate: float, stats: dict) -> None:
  """Posts the bodies in turn, one every 1/rate s (fewer if answers come slower)."""
  import aiohttp
  async with aiohttp.ClientSession() as session:
    turn, start = seed, time.perf_counter()
    while not stop.is_set():
      name, path, body = bodies[turn % len(bodies)]
      turn += 1
      await asyncio.sleep(max(0.0, start + (turn - seed) / rate - time.perf_counter()))
      try:
        async with session.post(url + path, data=body,
                                headers={"Content-Type": "application/json"}) as response:
          await response.read()
          status = response.status
      except aiohttp.ClientError:
        status = "closed"
      counts = stats["answers"].setdefault(name, {})
      counts[str(status)] = counts.get(str(status), 0) + 1


def new_shapes(limits) -> list[dict]:
  """Chat requests that each need another compiled shape: n, max_tokens (powers of two),
  stop-table width and greedy or sampled, in every combination."""
  stops = ([], ["x y z w v u t s r"], ["a b c d e f g h i j k l m n o p q"])
  tokens = [1 << k for k in range(limits.max_new_tokens.bit_length()) if 1 << k <= 64]
  return [{"messages": [{"role": "user", "content": "Which is better?"}], "n": n,
           "max_tokens": t, "stop": stop, "temperature": temperature}
          for n in (1, 2, 4, 8)[:limits.max_choices.bit_length()] for t in tokens
          for stop in stops for temperature in (0.0, 1.0)]


async def send_new_shapes(url: str, bodies: list, stop: asyncio.Event, rate: float,
                          stats: dict) -> None:
  """Posts each shape once, one every 1/rate s (fewer if answers come slower)."""
  import aiohttp
  async with aiohttp.ClientSession() as session:
    start = time.perf_counter()
    for turn, body in enumerate(bodies):
      if stop.is_set():
        break
      await asyncio.sleep(max(0.0, start + turn / rate - time.perf_counter()))
      try:
        async with session.post(url + "/v1/chat/completions", json=body) as response:
          await response.read()
          status = response.status
      except aiohttp.ClientError:
        status = "closed"
      stats["answers"][str(status)] = stats["answers"].get(str(status), 0) + 1


def attacker(attack: str, url: str, port: int, limits, seconds: float, rate: float,
             results) -> None:
  """One attack for `seconds`, in its own process (its sending must not take the server's
  interpreter lock); its counts go to `results`."""
  stats = {"opened": 0, "reopened": 0, "answers": {}}

  async def run():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    if attack == "idle_sockets":
      await idle_sockets(port, limits.max_connections + 64, stop, stats)
    elif attack == "kept_alive_sockets":
      await kept_alive_sockets(port, limits.max_connections_per_peer, stop, stats)
    elif attack == "compile_storm":
      await send_new_shapes(url, new_shapes(limits), stop, 2.0, stats)
    else:
      bodies = pathological_bodies(limits)
      await asyncio.gather(*[send_pathological(url, bodies, stop, seed, rate / 4, stats)
                             for seed in range(4)])
  asyncio.run(run())
  results.put(stats)


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
    try:
      response = await session.post(url + "/score", json=body)
    except aiohttp.ClientError:  # counted as a status of its own: the server never should
      stats["connection_error"] = stats.get("connection_error", 0) + 1
      stats["waits"].append(time.perf_counter() - start)
      return
    async with response:
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
  parser.add_argument("--attack_seconds", type=float, default=20)
  parser.add_argument("--attack_rate", type=float, default=40,
                      help="pathological requests per second, from 4 attackers")
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
  from gram_jax.serving.lifecycle import serve_in_background
  from gram_jax.serving.request_parsing import Limits
  from gram_jax.serving.server import RewardServer
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
  limits = Limits(max_batch_pairs=32, max_wait_ms=5, request_timeout_s=args.deadline,
                  max_queue_pairs=args.max_queue_pairs)
  server = RewardServer(reward, limits)
  running = serve_in_background(server)

  def closed_loop(seconds: float, attack: str = "", new_connections: bool = False) -> dict:
    stats = {"latencies": [], "errors": 0, "wrong": 0, "pairs": 0, "health_s": [],
             "health_failed": 0}
    results = multiprocessing.get_context("spawn").Queue()
    if attack:
      process = multiprocessing.get_context("spawn").Process(target=attacker, args=(
          attack, running.url, running.port, limits, seconds, args.attack_rate, results))
      process.start()
      time.sleep(2.0)  # the attack is under way (its sockets open) before the clients start
    deadline = time.monotonic() + seconds - (2.0 if attack else 0.0)
    start = time.perf_counter()

    async def load():
      stop = asyncio.Event()
      probe = asyncio.create_task(health_probe(running.url, stop, stats, new_connections))
      await asyncio.gather(*[client(running.url, pool, expected, deadline, seed, stats,
                                    new_connections) for seed in range(args.clients)])
      stop.set()
      await probe
    asyncio.run(load())
    stats["seconds"] = time.perf_counter() - start
    if attack:
      stats.update(results.get(timeout=60))
      process.join(30)
    return stats

  def attacked(attack: str, steady_rate: float, new_connections: bool) -> dict:
    stats = closed_loop(args.attack_seconds, attack, new_connections)
    health = np.array(stats["health_s"])
    rate = stats["pairs"] / stats["seconds"]
    result = {"seconds": round(stats["seconds"], 1), "requests": len(stats["latencies"]),
              "client_connections": "one per request" if new_connections else "keep-alive",
              "steady_pairs_per_second": steady_rate,
              "errors": stats["errors"], "wrong_scores": stats["wrong"],
              "pairs_per_second": rate, "vs_steady": rate / steady_rate,
              "latency_ms_p99": float(np.percentile(stats["latencies"], 99) * 1000),
              "health_probes": len(health), "health_failed": stats["health_failed"],
              "health_s_max": float(health.max()),
              "health_s_p99": float(np.percentile(health, 99))}
    if attack == "idle_sockets":
      result.update(idle_sockets_held=limits.max_connections + 64,
                    sockets_opened=stats["opened"], closed_by_server=stats["reopened"])
    elif attack == "kept_alive_sockets":
      result.update(kept_alive_sockets_held=2 * limits.max_connections_per_peer,
                    sockets_opened=stats["opened"], closed_by_server=stats["reopened"])
    elif attack == "compile_storm":
      result.update(new_shape_requests_per_second=2.0,
                    max_new_shapes_per_minute=limits.max_new_shapes_per_minute,
                    attack_answers=stats["answers"])
    else:
      result.update(attack_rate=args.attack_rate, attack_answers=stats["answers"])
    return result

  steady = closed_loop(args.seconds)
  latencies = np.array(steady["latencies"]) * 1000
  sustainable = steady["pairs"] / steady["seconds"]
  rss_before = rss_mb()
  rate = args.overload_factor * sustainable / 2  # requests/s of 2 pairs
  heavy = {"waits": [], "wrong": 0, "503_without_retry_after": 0, "max_queue_pairs_seen": 0,
           "peak_rss_mb": rss_before}
  asyncio.run(overload(running.url, pool, expected, rate, args.overload_seconds, server, heavy))
  after = closed_loop(5)
  fresh = closed_loop(args.attack_seconds - 2.0, new_connections=True)  # idle's baseline
  fresh_rate = fresh["pairs"] / fresh["seconds"]
  attacks = {"idle_sockets": attacked("idle_sockets", fresh_rate, True),
             "kept_alive_sockets": attacked("kept_alive_sockets", fresh_rate, True),
             "compile_storm": attacked("compile_storm", sustainable, False),
             "pathological_bodies": attacked("pathological_bodies", sustainable, False)}
  running.stop()
  waits = np.array(heavy["waits"])
  print(json.dumps({
      "device": jax.devices()[0].device_kind, "arch": args.arch,
      "params": model_config.num_params(), "clients": args.clients,
      "seconds": round(steady["seconds"], 1),
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
          "connection_errors": heavy.get("connection_error", 0),
          "503_without_retry_after": heavy["503_without_retry_after"],
          "wrong_scores": heavy["wrong"],
          "served_pairs_per_second": 2 * heavy.get(200, 0) / args.overload_seconds,
          "longest_wait_s": float(waits.max()), "wait_s_p99": float(np.percentile(waits, 99)),
          "max_queue_pairs_seen": heavy["max_queue_pairs_seen"],
          "rss_mb_before": round(rss_before, 1), "rss_mb_peak": round(heavy["peak_rss_mb"], 1)},
      "after_overload": {"seconds": 5, "requests": len(after["latencies"]),
                         "errors": after["errors"], "wrong_scores": after["wrong"],
                         "pairs_per_second": after["pairs"] / after["seconds"]},
      "attacks": attacks,
  }, indent=2))


if __name__ == "__main__":
  main()
