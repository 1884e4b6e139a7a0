"""HTTP reward service (aiohttp) for RLHF trainers and best-of-n.

Endpoints: /score (pairs), /rank (best-of-n), /group_reward (GRPO: each completion's mean
win probability in its group), /reward and /get_reward (OpenRLHF's remote RM),
/v1/chat/completions (OpenAI-compatible, for GenRM clients) and /generative_scoring (vLLM's
next-token label scorer, with GRAM's both-order form); /health, /metrics.

Every request has a deadline; host work (tokenising) runs once on its own thread through a
bounded HostQueue, under the deadline, and device work goes through one bounded Batcher
(gram_jax.serving.request_queue). A full queue answers 503 with Retry-After; every limit
answers 4xx naming the limit; a batch that fails fails only its
requests, and a client that leaves takes its queued work with it.
"""
import asyncio
import base64
import binascii
import collections
import concurrent.futures
import copy
import functools
import hmac
import json
import threading
import time
from typing import Any, Awaitable, Callable

import prometheus_client
from absl import logging
from aiohttp import web, web_protocol

from gram_jax.errors import GramError
from gram_jax.inference import ranking
from gram_jax.serving import compile_gate, generative_scoring
from gram_jax.serving.request_queue import BULK, Batcher, Overloaded
from gram_jax.serving.chat_completions import ChatCompletions
from gram_jax.inference.generate import Generator
from gram_jax.serving.host_queue import HostQueue
from gram_jax.serving.request_parsing import (Limits, RequestError, parse_chat_request,
                                                parse_group_request, parse_rank_request,
                                                parse_reward_request, parse_score_request)
from gram_jax.inference.reward import RewardModel
from gram_jax.inference.scorer import TooLong
from gram_jax.text import tokenizer as tok

Handler = Callable[[Any, float], Awaitable[dict]]
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _host_name(host: str) -> str:
  """The name of a Host header or an origin's authority, without port or brackets."""
  host = host.strip().rstrip("/").lower()
  if host.startswith("["):
    return host[1:].split("]", 1)[0]
  return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _no_constant(name: str) -> Any:
  raise ValueError(f"{name} is not JSON")


class Metrics:
  def __init__(self):
    self.registry = prometheus_client.CollectorRegistry()
    self.requests = prometheus_client.Counter(
        "gram_requests", "Requests by endpoint and status", ["endpoint", "status"],
        registry=self.registry)
    self.latency = prometheus_client.Histogram(
        "gram_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
    self.batch_pairs = prometheus_client.Histogram(
        "gram_batch_pairs", "Pairs per scoring batch", registry=self.registry,
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    self.dropped = prometheus_client.Counter(
        "gram_dropped", "Requests dropped before their work was done", ["reason"],
        registry=self.registry)
    self.trimmed = prometheus_client.Counter(
        "gram_trimmed_pairs", "Pairs trimmed to fit max_len", registry=self.registry)
    self.trimmed_references = prometheus_client.Counter(
        "gram_trimmed_reference_prompts", "Reference prompts cut (by fields) to fit max_len",
        registry=self.registry)
    self.queue_pairs = prometheus_client.Gauge(
        "gram_queue_pairs", "Pairs waiting for the device", registry=self.registry)
    self.queue_calls = prometheus_client.Gauge(
        "gram_queue_generations", "Generations waiting for the device", registry=self.registry)
    self.connections = prometheus_client.Gauge(
        "gram_open_connections", "Open client connections", registry=self.registry)
    self.compiles = prometheus_client.Counter(
        "gram_compiles", "XLA compiles of this process", registry=self.registry)
    self.compiles_refused = prometheus_client.Counter(
        "gram_compiles_refused", "Requests refused (503) for needing a new compiled shape "
        "past max_new_shapes_per_minute", ["kind"], registry=self.registry)

  def render(self) -> bytes:
    return prometheus_client.generate_latest(self.registry)


def key_of(header: str) -> str:
  """The API key in an Authorization header: `Bearer KEY` (any case), or the password of
  HTTP Basic (aiohttp and requests send `http://user:KEY@host` so; OpenRLHF's client does)."""
  scheme, _, value = header.strip().partition(" ")
  if scheme.lower() == "bearer":
    return value.strip()
  if scheme.lower() == "basic":
    try:
      return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError, ValueError):
      return ""
  return ""


class RewardServer:
  """`reference`, when given, writes a reference response for /reward samples sent without
  one: a frozen policy's greedy answer. The paper's PPO reward compares a sample with the
  *current* policy's greedy answer, which only the trainer has: trainers send it (OpenRLHF
  `labels`, or `references`); `reference` is a fallback for clients that cannot. It returns
  the answers and, per prompt, whether the prompt was cut to fit (counted in /metrics).

  `rlhf_readout` is what a reasoning judge's RLHF rewards (/reward, /get_reward,
  /group_reward) are made of: 'probability' (default), P(A)/P(B) after each rationale, smooth
  where a vote share is a coarse {0, 1/2, 1}; or 'verdict', the vote shares. /score and
  /rank use the judge's own readout."""

  def __init__(self, reward: RewardModel, limits: Limits = Limits(), api_key: str = "",
               reference: Callable[[list[str]], tuple[list[str], list[bool]]] | None = None,
               model_name: str = "gram_jax", rlhf_readout: str = "probability"):
    self.reward, self.limits, self.api_key = reward, limits, api_key.strip()
    if not (self.api_key.isascii() and self.api_key.isprintable()):
      raise GramError("the API key holds characters other than printable ASCII, which HTTP "
                      "clients (requests, OpenRLHF's) cannot send in a header; use another")
    tok.check_render_bound(reward.tokenizer, reward.scorer.encoder.chat_template,
                           limits.max_text_chars)
    self.reference, self.rlhf_readout = reference, rlhf_readout
    self.references: collections.OrderedDict[str, str] = collections.OrderedDict()
    self.pending_references: dict[str, asyncio.Future] = {}
    self.metrics = Metrics()
    self.device = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="device")
    self.host = HostQueue(limits.max_host_queue)
    self.rankers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="ranker")
    compile_gate.count_compiles(self.metrics.compiles)
    generator = Generator(reward.model, copy.deepcopy(reward.tokenizer), reward.batch_size,
                          reward.max_len, reward.mesh)
    # One bound on new compiled shapes for every path that can make them (chat, raw
    # generative scoring with labels other than the judge's).
    self.compile_gate = compile_gate.CompileGate(limits.max_new_shapes_per_minute,
                                                 self.metrics.compiles_refused)
    generator.admit_shape = self.compile_gate.admit
    self.chat = ChatCompletions(generator, model_name, reward.scorer.encoder.chat_template)
    self.model_name = model_name
    self.generative_scoring = generative_scoring.Route(self)
    self.batcher: Batcher | None = None
    self.batcher_task: asyncio.Task | None = None
    self.draining = False

  async def prepare(self, triples: list, field: str, deadline: float,
                    readout: str | None = None) -> list:
    """Tokenised once, on the host thread; a pair over max_input_tokens is a 413."""
    try:
      return await self.host.run(self.reward.prepare, triples, self.limits.max_input_tokens,
                                 readout, deadline=deadline)
    except TooLong as e:
      raise RequestError(413, f"{field}[{e.index}]: {e.count()} exceeds "
                              f"max_input_tokens={e.limit}") from None

  async def scores(self, rows: list, deadline: float, lane: str = "interactive"):
    scores, trimmed = await self.batcher.score(rows, deadline, lane)
    self.metrics.trimmed.inc(int(trimmed.sum()))
    return scores, trimmed

  def check_keyless_origin(self, request: web.Request) -> None:
    """A server without a key is reachable from this machine only, and so from any web page
    its user opens there: such a page may POST a 'simple' (text/plain, form) body without a
    preflight, or reach it through DNS rebinding. Keyless, only JSON bodies, loopback Host
    names and no foreign Origin are answered (a key makes all of it moot)."""
    if self.api_key:
      return
    host = request.headers.get("Host", "")
    if host and _host_name(host) not in LOOPBACK_NAMES:
      raise RequestError(403, f"Host {host[:100]!r}: a server without an API key answers "
                              "only loopback names (127.0.0.1, localhost, ::1); give it a key "
                              "to serve other names")
    origin = request.headers.get("Origin")
    if origin is not None and _host_name(origin.split("://", 1)[-1]) not in LOOPBACK_NAMES:
      raise RequestError(403, f"Origin {origin[:100]!r}: a server without an API key refuses "
                              "requests from web pages of other sites")
    if request.method == "POST" and request.content_type != "application/json":
      raise RequestError(415, f"Content-Type {request.content_type!r}: a server without an "
                              "API key takes application/json bodies only")

  def authorized(self, request: web.Request) -> bool:
    if not self.api_key:
      return True
    given = key_of(request.headers.get("Authorization", "")) or \
        request.headers.get("X-API-Key", "")
    try:  # aiohttp keeps undecodable header bytes as surrogates
      return hmac.compare_digest(given.encode("utf-8"), self.api_key.encode("utf-8"))
    except UnicodeEncodeError:
      return False

  async def _body(self, request: web.Request) -> Any:
    if request.content_length and request.content_length > self.limits.max_body_bytes:
      raise RequestError(413, f"body: {request.content_length} bytes exceeds max_body_bytes="
                              f"{self.limits.max_body_bytes}")
    try:
      raw = await asyncio.wait_for(request.read(), self.limits.body_timeout_s)
    except web.HTTPRequestEntityTooLarge:
      raise RequestError(413, f"body exceeds max_body_bytes={self.limits.max_body_bytes}") \
          from None
    except asyncio.TimeoutError:
      raise RequestError(408, f"body not received within body_timeout_s="
                              f"{self.limits.body_timeout_s}") from None
    except web_protocol.RequestPayloadError as e:  # e.g. garbage under Content-Encoding: gzip
      reason = str(e).strip().splitlines()[-1].strip()
      raise RequestError(400, f"body: cannot be read ({reason})") from None
    try:
      return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, NaN, nesting too deep
      reason = str(e) if not isinstance(e, RecursionError) else "nested too deeply"
      raise RequestError(400, f"body: not valid JSON ({reason})") from None

  async def expect_continue(self, request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` is granted only to a request that may send its body: the
    origin, key and size checks first, else their answer and no body is read."""
    try:
      self.check_keyless_origin(request)
      if not self.authorized(request):
        raise RequestError(401, "missing or wrong API key")
      if request.content_length and request.content_length > self.limits.max_body_bytes:
        raise RequestError(413, f"body: {request.content_length} bytes exceeds "
                                f"max_body_bytes={self.limits.max_body_bytes}")
    except RequestError as e:
      return web.json_response({"error": str(e)}, status=e.status,
                               headers={"Connection": "close"})
    if request.version >= (1, 1):
      await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None

  def endpoint(self, name: str, handle: Handler,
               error_body: Callable[[int, str], dict] = lambda status, message:
               {"error": message}) -> Callable:
    """`handle` under the key, origin, deadline and size rules; every failure a JSON answer
    (`error_body` gives its shape)."""
    async def wrapped(request: web.Request) -> web.Response:
      start, status, headers = time.perf_counter(), 200, {}
      deadline = time.monotonic() + self.limits.request_timeout_s
      try:
        self.check_keyless_origin(request)
        if not self.authorized(request):
          raise RequestError(401, "missing or wrong API key (Authorization: Bearer KEY, or "
                                  "http://user:KEY@host)")
        if self.draining:
          raise Overloaded("shutting down", 5)
        answer = await handle(await self._body(request), deadline)
        try:
          return web.json_response(text=json.dumps(answer, allow_nan=False))
        except ValueError:  # NaN is no reward: an RLHF trainer would take it as one
          logging.error("%s: the model produced a non-finite score; answered 500", name)
          raise RequestError(500, "the model produced a non-finite score (NaN or infinity): "
                                  "its weights or numerics are damaged") from None
      except RequestError as e:
        status, answer = e.status, error_body(e.status, str(e))
      except Overloaded as e:
        status, answer = 503, error_body(503, str(e))
        headers["Retry-After"] = str(e.retry_after)
      except GramError as e:
        status, answer = 422, error_body(422, str(e))
      except asyncio.CancelledError:  # the client left: nothing to answer
        status = 499
        raise
      except Exception:  # a bug: logged in full, the client gets a JSON 500, serving goes on
        status, answer = 500, error_body(500, "internal error (logged by the server)")
        logging.exception("%s: unexpected error", name)
      finally:
        self.metrics.requests.labels(name, str(status)).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - start)
      return web.json_response(answer, status=status, headers=headers)
    return wrapped

  async def score(self, body: Any, deadline: float) -> dict:
    rows = await self.prepare(parse_score_request(body, self.limits), "pairs", deadline)
    scores, trimmed = await self.scores(rows, deadline)
    return {"scores": scores.tolist(), "trimmed": trimmed.tolist()}

  async def rank(self, body: Any, deadline: float) -> dict:
    """The ranking runs on a ranker thread; each of its comparison rounds is queued as bulk
    work, so a long ranking shares the device with interactive requests."""
    prompt, responses, method = parse_rank_request(body, self.limits)
    longest = sorted(responses, key=len)[-2:] + [""]
    await self.prepare([(prompt, longest[0], longest[1])], "responses", deadline)
    loop, stop = asyncio.get_running_loop(), threading.Event()
    current: list[concurrent.futures.Future] = []
    trimmed = [False]

    def compare(triples: list) -> Any:
      if stop.is_set():
        raise asyncio.CancelledError()
      current[:] = [asyncio.run_coroutine_threadsafe(self.prepare(triples, "responses",
                                                                  deadline), loop)]
      rows = current[0].result()
      current[:] = [asyncio.run_coroutine_threadsafe(
          self.scores(rows, deadline, BULK), loop)]
      scores, cut = current[0].result()
      trimmed[0] |= bool(cut.any())
      return scores

    try:
      result = await loop.run_in_executor(self.rankers, ranking.rank, prompt, responses,
                                          compare, method)
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
      stop.set()
      for future in current:
        future.cancel()
      raise
    return {"best": result.best, "order": result.order, "scores": result.scores,
            "comparisons": result.comparisons, "trimmed": trimmed[0]}

  async def group_reward(self, body: Any, deadline: float) -> dict:
    group = parse_group_request(body, self.limits)
    triples = [(group.question, group.completions[i], group.completions[j])
               for i, j in group.games]
    scores, trimmed = await self.scores(
        await self.prepare(triples, "completions", deadline, self.rlhf_readout), deadline)
    cut = [False] * len(group.completions)
    for (i, j), was_cut in zip(group.games, trimmed):
      cut[i] |= bool(was_cut)
      cut[j] |= bool(was_cut)
    rewards = ranking.mean_win_probability(len(group.completions), group.games, scores)
    return {"rewards": rewards.tolist(), "comparisons": len(group.games), "trimmed": cut}

  async def reward_endpoint(self, body: Any, deadline: float) -> dict:
    """OpenRLHF's remote RM: the reward of each sample is its score against the reference."""
    items = parse_reward_request(body, self.limits)
    await self.prepare([(it.question, it.answer, "") for it in items], "query", deadline)
    missing = list(dict.fromkeys(it.question for it in items if it.reference is None))
    if missing and self.reference is None:
      raise RequestError(400, "labels: a reference response is required for every sample "
                              "(send 'labels' or 'references', or start the server with "
                              "serve.reference_model)")
    made = await self.generated_references(missing, deadline) if missing else {}
    triples = [(it.question, it.answer, it.reference or made[it.question]) for it in items]
    scores, trimmed = await self.scores(
        await self.prepare(triples, "query", deadline, self.rlhf_readout), deadline)
    rewards = scores[:, 0].tolist()
    return {"rewards": rewards, "scores": rewards, "reference_scores": scores[:, 1].tolist(),
            "trimmed": trimmed.tolist(),
            "extra_logs": {"reference_score": scores[:, 1].tolist(),
                           "trimmed": trimmed.astype(float).tolist()}}

  async def generated_references(self, prompts: list[str], deadline: float) -> dict[str, str]:
    """The reference model's answers: cached (least recently used out), and a prompt being
    generated for one request is awaited, not generated again, by the others."""
    found, waits, need = {}, {}, []
    for prompt in prompts:
      if prompt in self.references:
        self.references.move_to_end(prompt)
        found[prompt] = self.references[prompt]
      elif prompt in self.pending_references:
        waits[prompt] = self.pending_references[prompt]
      else:
        need.append(prompt)
    if need:
      shared = asyncio.get_running_loop().create_future()
      shared.add_done_callback(lambda f: f.cancelled() or f.exception())
      self.pending_references.update(dict.fromkeys(need, shared))
      try:
        answers, cut = await self.batcher.call(functools.partial(self.reference, need),
                                               deadline)
        self.metrics.trimmed_references.inc(sum(map(bool, cut)))
        made = dict(zip(need, answers))
        shared.set_result(made)
      except BaseException as e:
        if not shared.done():
          shared.set_exception(Overloaded("the request generating this reference failed or "
                                          f"left ({type(e).__name__}); retry", 1))
        raise
      finally:
        for prompt in need:
          self.pending_references.pop(prompt, None)
      found.update(made)
      self.references.update(made)
      while len(self.references) > self.limits.reference_cache:
        self.references.popitem(last=False)
    for prompt, future in waits.items():
      found[prompt] = (await asyncio.wait_for(
          asyncio.shield(future), max(0.0, deadline - time.monotonic())))[prompt]
    return found

  async def chat_completions(self, body: Any, deadline: float) -> dict:
    request = parse_chat_request(body, self.limits)
    prompt_ids = await self.host.run(self.chat.encode, request, deadline=deadline)
    return await self.batcher.call(functools.partial(self.chat.complete, request, prompt_ids),
                                   deadline)

  async def health(self, request: web.Request) -> web.Response:
    try:
      self.check_keyless_origin(request)  # DNS rebinding: a page's own name for 127.0.0.1
    except RequestError as e:
      return web.json_response({"error": str(e)}, status=e.status)
    reasoning = self.reward.reasoning
    alive = self.batcher_task is not None and not self.batcher_task.done()
    status = "ok" if alive and not self.draining else \
        ("draining" if alive else "batcher stopped")
    return web.json_response(
        {"status": status, "reasoning": reasoning is not None,
         "votes": reasoning.votes if reasoning else None,
         "orders": reasoning.orders if reasoning else None,
         "rlhf_readout": self.rlhf_readout if reasoning else None,
         "max_len": self.reward.max_len,
         "queue_pairs": self.batcher.queued_pairs if self.batcher else 0},
        status=200 if status == "ok" else 503)

  def work_in_flight(self) -> bool:
    """Device or host work still running on its thread (it cannot be interrupted)."""
    return bool(self.batcher and self.batcher.on_device) or self.host.running

  async def prometheus(self, request: web.Request) -> web.Response:
    try:
      self.check_keyless_origin(request)
    except RequestError as e:
      return web.json_response({"error": str(e)}, status=e.status)
    if not self.authorized(request):
      return web.json_response({"error": "missing or wrong API key"}, status=401)
    return web.Response(body=self.metrics.render(), content_type="text/plain",
                        charset="utf-8")

  async def _start_batcher(self, app: web.Application):
    limits = self.limits
    self.batcher = Batcher(self.reward.score_prepared, self.device, limits.max_batch_pairs,
                           limits.max_wait_ms, limits.max_queue_pairs, limits.max_queued_calls,
                           lambda reason: self.metrics.dropped.labels(reason).inc(),
                           self.metrics.batch_pairs.observe)
    self.metrics.queue_pairs.set_function(lambda: self.batcher.queued_pairs)
    self.metrics.queue_calls.set_function(lambda: self.batcher.queued_calls)
    self.batcher_task = asyncio.create_task(self.batcher.run())
    yield
    self.batcher_task.cancel()
    self.batcher.fail_all(Overloaded("shutting down", 5))

  def app(self) -> web.Application:
    app = web.Application(client_max_size=self.limits.max_body_bytes)
    app.cleanup_ctx.append(self._start_batcher)
    reward = self.endpoint("reward", self.reward_endpoint)
    expect = self.expect_continue
    app.add_routes([
        web.post("/score", self.endpoint("score", self.score), expect_handler=expect),
        web.post("/rank", self.endpoint("rank", self.rank), expect_handler=expect),
        web.post("/group_reward", self.endpoint("group_reward", self.group_reward),
                 expect_handler=expect),
        web.post("/reward", reward, expect_handler=expect),
        web.post("/get_reward", reward, expect_handler=expect),  # OpenRLHF's path
        web.post("/v1/chat/completions", self.endpoint("chat", self.chat_completions),
                 expect_handler=expect),
        web.post("/generative_scoring", self.endpoint(
            "generative_scoring", self.generative_scoring.answer, generative_scoring.error_body),
                 expect_handler=expect),
        web.get("/health", self.health),
        web.get("/metrics", self.prometheus)])
    return app
