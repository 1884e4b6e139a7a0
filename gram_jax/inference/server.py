"""HTTP reward service (aiohttp): /score, /rank, /reward (OpenRLHF's remote-RM shape),
/health, /metrics.

Requests from concurrent clients are gathered into one scoring batch (up to max_batch_pairs,
or whatever arrived within max_wait_ms) and scored on one worker thread, so the jitted
shapes stay those the warm-up compiled. Every limit answers 4xx naming the limit.
"""
import asyncio
import concurrent.futures
import dataclasses
import hmac
import json
import time
from typing import Any, Callable

import numpy as np
import prometheus_client
from absl import logging
from aiohttp import web

from gram_jax.errors import GramError
from gram_jax.inference import ranking
from gram_jax.inference.reward import RewardModel


@dataclasses.dataclass(frozen=True)
class Limits:
  max_body_bytes: int = 4 << 20
  max_pairs: int = 256  # pairs (or responses to rank) in one request
  max_text_chars: int = 100_000  # one prompt or response
  max_input_tokens: int = 8192  # prompt + both responses, tokenised
  max_batch_pairs: int = 64  # pairs scored together across requests
  max_wait_ms: float = 5.0


def _no_constant(name: str) -> Any:
  raise ValueError(f"{name} is not JSON")


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class Metrics:
  def __init__(self):
    self.registry = prometheus_client.CollectorRegistry()
    self.requests = prometheus_client.Counter(
        "gram_requests", "Requests by endpoint and status", ["endpoint", "status"],
        registry=self.registry)
    self.latency = prometheus_client.Histogram(
        "gram_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
    self.batch_pairs = prometheus_client.Histogram(
        "gram_batch_pairs", "Pairs per scoring batch", registry=self.registry,
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

  def render(self) -> bytes:
    return prometheus_client.generate_latest(self.registry)


class Batcher:
  """Gathers pairs from concurrent requests into batches for one scoring thread."""

  def __init__(self, score: Callable[[list], np.ndarray], limits: Limits,
               executor: concurrent.futures.Executor, metrics: Metrics):
    self.score, self.limits, self.executor, self.metrics = score, limits, executor, metrics
    self.queue: asyncio.Queue = asyncio.Queue()

  async def submit(self, pairs: list) -> np.ndarray:
    future = asyncio.get_running_loop().create_future()
    await self.queue.put((pairs, future))
    return await future

  async def run(self) -> None:
    while True:
      waiting = [await self.queue.get()]
      size = len(waiting[0][0])
      deadline = time.monotonic() + self.limits.max_wait_ms / 1000
      while size < self.limits.max_batch_pairs:
        try:
          item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
          break
        waiting.append(item)
        size += len(item[0])
      pairs = [p for request_pairs, _ in waiting for p in request_pairs]
      self.metrics.batch_pairs.observe(len(pairs))
      try:
        scores = await asyncio.get_running_loop().run_in_executor(self.executor, self.score,
                                                                  pairs)
      except Exception as e:  # every waiting request learns why its batch failed
        for _, future in waiting:
          future.set_exception(e)
        continue
      start = 0
      for request_pairs, future in waiting:
        future.set_result(scores[start:start + len(request_pairs)])
        start += len(request_pairs)


def _text(value: Any, where: str, limits: Limits) -> str:
  if not isinstance(value, str):
    raise RequestError(400, f"{where}: expected a string, got {type(value).__name__}")
  if len(value) > limits.max_text_chars:
    raise RequestError(413, f"{where}: {len(value)} characters exceeds max_text_chars="
                            f"{limits.max_text_chars}")
  return value


def _list(body: dict, field: str, limits: Limits) -> list:
  value = body.get(field)
  if not isinstance(value, list):
    raise RequestError(400, f"{field}: expected a list")
  if not value:
    raise RequestError(400, f"{field}: empty")
  if len(value) > limits.max_pairs:
    raise RequestError(413, f"{field}: {len(value)} items exceeds max_pairs={limits.max_pairs}")
  return value


def parse_score_request(body: Any, limits: Limits) -> list[tuple[str, str, str]]:
  if not isinstance(body, dict):
    raise RequestError(400, "body: expected a JSON object")
  pairs = []
  for i, item in enumerate(_list(body, "pairs", limits)):
    if not isinstance(item, dict):
      raise RequestError(400, f"pairs[{i}]: expected an object")
    pairs.append(tuple(_text(item.get(k), f"pairs[{i}].{k}", limits)
                       for k in ("prompt", "response_a", "response_b")))
  return pairs


def parse_rank_request(body: Any, limits: Limits) -> tuple[str, list[str], str]:
  if not isinstance(body, dict):
    raise RequestError(400, "body: expected a JSON object")
  prompt = _text(body.get("prompt"), "prompt", limits)
  responses = [_text(r, f"responses[{i}]", limits)
               for i, r in enumerate(_list(body, "responses", limits))]
  method = body.get("method", "knockout")
  if method not in ranking.METHODS:
    raise RequestError(400, f"method: {method!r} not in {', '.join(ranking.METHODS)}")
  return prompt, responses, method


def parse_reward_request(body: Any, limits: Limits) -> list[tuple[str, str, str | None]]:
  """OpenRLHF remote RM: {"query": [prompt+response], "prompts": [prompt], "references" or
  "labels": [reference response]} -> (prompt, response, reference) triples; without
  references the reference is None (the server generates it, when it has a reference model)."""
  if not isinstance(body, dict):
    raise RequestError(400, "body: expected a JSON object")
  queries = _list(body, "query", limits)
  prompts = body.get("prompts")
  if not isinstance(prompts, list) or len(prompts) != len(queries):
    raise RequestError(400, "prompts: expected a list as long as query")
  references = body.get("references", body.get("labels"))
  if references is None:
    references = [None] * len(queries)
  if not isinstance(references, list) or len(references) != len(queries):
    raise RequestError(400, "references: expected a list as long as query (the reference "
                            "response each sample is compared with; 'labels' also works)")
  triples = []
  for i, (query, prompt, reference) in enumerate(zip(queries, prompts, references)):
    query = _text(query, f"query[{i}]", limits)
    prompt = _text(prompt, f"prompts[{i}]", limits)
    response = query[len(prompt):] if query.startswith(prompt) else query
    if reference is not None:
      reference = _text(reference, f"references[{i}]", limits)
    triples.append((prompt, response, reference))
  return triples


class RewardServer:
  """`reference`, when given, writes the reference response for prompts a /reward request
  sends without one (the paper's PPO reward: a sample scored against a greedy reference)."""

  def __init__(self, reward: RewardModel, limits: Limits = Limits(), api_key: str = "",
               reference: Callable[[list[str]], list[str]] | None = None):
    self.reward, self.limits, self.api_key = reward, limits, api_key
    self.reference = reference
    self.references: dict[str, str] = {}  # prompt -> generated reference, latest 10,000
    self.metrics = Metrics()
    self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scorer")
    self.batcher: Batcher | None = None

  def check_lengths(self, pairs: list[tuple[str, str, str]], field: str) -> None:
    encode = lambda text: len(self.reward.tokenizer.encode(text, add_special_tokens=False))
    for i, pair in enumerate(pairs):
      tokens = sum(map(encode, pair))
      if tokens > self.limits.max_input_tokens:
        raise RequestError(413, f"{field}[{i}]: {tokens} tokens exceeds max_input_tokens="
                                f"{self.limits.max_input_tokens}")

  async def _body(self, request: web.Request) -> Any:
    if self.api_key:
      given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or \
          request.headers.get("X-API-Key", "")
      if not hmac.compare_digest(given.encode(), self.api_key.encode()):
        raise RequestError(401, "missing or wrong API key (Authorization: Bearer KEY)")
    if request.content_length and request.content_length > self.limits.max_body_bytes:
      raise RequestError(413, f"body: {request.content_length} bytes exceeds max_body_bytes="
                              f"{self.limits.max_body_bytes}")
    try:
      raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
      raise RequestError(413, f"body exceeds max_body_bytes={self.limits.max_body_bytes}") \
          from None
    try:
      return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, NaN, nesting too deep
      reason = str(e) if not isinstance(e, RecursionError) else "nested too deeply"
      raise RequestError(400, f"body: not valid JSON ({reason})") from None

  def endpoint(self, name: str, handle: Callable) -> Callable:
    async def wrapped(request: web.Request) -> web.Response:
      start, status = time.perf_counter(), 200
      try:
        return web.json_response(await handle(await self._body(request)))
      except RequestError as e:
        status = e.status
        return web.json_response({"error": str(e)}, status=e.status)
      except GramError as e:
        status = 422
        return web.json_response({"error": str(e)}, status=422)
      except Exception:  # a bug: logged in full, the client gets a JSON 500, serving goes on
        status = 500
        logging.exception("%s: unexpected error", name)
        return web.json_response({"error": "internal error (logged by the server)"},
                                 status=500)
      finally:
        self.metrics.requests.labels(name, str(status)).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - start)
    return wrapped

  async def score(self, body: Any) -> dict:
    pairs = parse_score_request(body, self.limits)
    self.check_lengths(pairs, "pairs")
    return {"scores": (await self.batcher.submit(pairs)).tolist()}

  async def rank(self, body: Any) -> dict:
    prompt, responses, method = parse_rank_request(body, self.limits)
    self.check_lengths([(prompt, r, "") for r in responses], "responses")
    result = await asyncio.get_running_loop().run_in_executor(
        self.executor, self.reward.rank, prompt, responses, method)
    return {"best": result.best, "order": result.order, "scores": result.scores,
            "comparisons": result.comparisons}

  async def reward_endpoint(self, body: Any) -> dict:
    triples = parse_reward_request(body, self.limits)
    missing = sorted({p for p, _, ref in triples if ref is None} - set(self.references))
    if missing and self.reference is None:
      raise RequestError(400, "references: required (send 'references' or 'labels', or start "
                              "the server with serve.reference_model)")
    if missing:
      made = await asyncio.get_running_loop().run_in_executor(self.executor, self.reference,
                                                              missing)
      self.references.update(zip(missing, made))
      while len(self.references) > 10_000:
        self.references.pop(next(iter(self.references)))
    triples = [(p, r, self.references[p] if ref is None else ref) for p, r, ref in triples]
    self.check_lengths(triples, "query")
    scores = await self.batcher.submit(triples)
    return {"rewards": scores[:, 0].tolist(), "reference_scores": scores[:, 1].tolist()}

  async def health(self, request: web.Request) -> web.Response:
    reasoning = self.reward.reasoning
    return web.json_response({"status": "ok", "reasoning": reasoning is not None,
                              "votes": reasoning.votes if reasoning else None,
                              "max_len": self.reward.max_len})

  async def prometheus(self, request: web.Request) -> web.Response:
    return web.Response(body=self.metrics.render(),
                        content_type="text/plain", charset="utf-8")

  async def _start_batcher(self, app: web.Application):
    self.batcher = Batcher(self.reward.score_batch, self.limits, self.executor, self.metrics)
    task = asyncio.create_task(self.batcher.run())
    yield
    task.cancel()

  def app(self) -> web.Application:
    app = web.Application(client_max_size=self.limits.max_body_bytes)
    app.cleanup_ctx.append(self._start_batcher)
    app.add_routes([
        web.post("/score", self.endpoint("score", self.score)),
        web.post("/rank", self.endpoint("rank", self.rank)),
        web.post("/reward", self.endpoint("reward", self.reward_endpoint)),
        web.post("/get_reward", self.endpoint("reward", self.reward_endpoint)),  # OpenRLHF path
        web.get("/health", self.health),
        web.get("/metrics", self.prometheus)])
    return app
