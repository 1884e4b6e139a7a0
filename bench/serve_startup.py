"""Reward server start-up, cold and with the persistent compilation cache: seconds from
launch until /health answers (the serve stage compiles its scoring length buckets before it
listens), then the first /score and the first chat completion.

  python bench/serve_startup.py                  # the offline SmolLM2-135M-Instruct build
  python bench/serve_startup.py --model=MODEL --max_len=1024

The serve stage runs twice on one fresh cache folder: the first run compiles and fills it
(cold), the second reads it back (warm). Prints one JSON object.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PAIR = {"prompt": "What is the capital of France?", "response_a": "Paris is the capital.",
        "response_b": "The answer is 4."}
CHAT = {"messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 16}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def post(port: int, path: str, body: dict) -> float:
  """Seconds until the answer (which must be a 200)."""
  request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                   {"Content-Type": "application/json"})
  start = time.perf_counter()
  with urllib.request.urlopen(request, timeout=600) as response:
    assert response.status == 200, response.status
    response.read()
  return time.perf_counter() - start


def one_run(model: str, max_len: int, cache: str, workdir: str) -> dict:
  port = free_port()
  command = [sys.executable, "-m", "gram_jax.main", "--config=configs/serve.py",
             f"--config.model.path={model}", f"--config.serve.port={port}",
             f"--config.serve.max_len={max_len}", f"--config.compilation_cache={cache}",
             f"--config.workdir={workdir}"]
  start = time.perf_counter()
  with open(os.path.join(workdir, "serve.log"), "w") as log:
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  try:
    while True:
      if server.poll() is not None:
        sys.exit(f"the server exited with {server.returncode}: {workdir}/serve.log")
      try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
          if r.status == 200:
            break
      except OSError:
        pass
      time.sleep(0.2)
    health = time.perf_counter() - start
    return {"seconds_to_health": health, "first_score_seconds": post(port, "/score",
                                                                     {"pairs": [PAIR]}),
            "first_chat_seconds": post(port, "/v1/chat/completions", CHAT),
            "second_chat_seconds": post(port, "/v1/chat/completions", CHAT)}
  finally:
    server.terminate()
    server.wait(timeout=60)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="", help="HF directory (default: SmolLM2 offline)")
  parser.add_argument("--max_len", type=int, default=1024)
  args = parser.parse_args()
  from gram_jax import provenance
  from gram_jax.hf.smollm2 import smollm2_instruct
  model = args.model or smollm2_instruct()
  with tempfile.TemporaryDirectory() as scratch:
    cache = os.path.join(scratch, "compilation_cache")
    runs = {name: one_run(model, args.max_len, cache, tempfile.mkdtemp(dir=scratch))
            for name in ("cold", "warm")}
    kept = [os.path.join(d, f) for d, _, files in os.walk(cache) for f in files]
    report = {"model": model, "serve.max_len": args.max_len,
              "commit": provenance.current_code_version(), **runs,
              "cache_entries": len(kept),
              "cache_bytes": sum(os.path.getsize(f) for f in kept)}
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
