"""vLLM's `/generative_scoring` (vllm-project/vllm#34539), so clients written for a
vLLM-served causal LM scorer (rerankers, verl and NeMo reward functions) score with a
gram_jax judge unchanged.

Raw form (vLLM's): each item is appended to the query (prepended with `item_first`), and an
item's score is P(label_token_ids[0]) as the next token — softmaxed over the label ids
(`apply_softmax`, the default; with two labels P0 / (P0 + P1), GRAM's readout) or over the
whole vocabulary. As in vLLM the query and items are a prompt the client rendered: text is
tokenized with its special tokens (the query with `add_special_tokens`, items without), or
sent as token ids. Unlike vLLM, a prompt longer than the judge's prompt length (or
serve.max_input_tokens) is refused (413), not cut from the end, which would move the
position read.

GRAM form (`"form": "both_orders"`, a gram_jax field): the query is a question and the items
responses, text only, kept as data; the server renders the judge's own prompt in both A/B
orders and returns each response's both-order score (docs/method.md §4) — of two items
against each other, or of each item against `reference`. It is the score `RewardModel.score`
gives and the score a reasoning judge gives by its readout.

Label ids may be given as text too (`label_tokens`, a gram_jax field): each must be one token.
"""
import copy
import dataclasses
import functools
import time
import uuid
from typing import Any, Sequence

import numpy as np

from gram_jax.inference.scorer import EncodedPair, check_deadline
from gram_jax.serving.request_parsing import Limits, RequestError, text
from gram_jax.serving.request_queue import BULK, INTERACTIVE

RAW, BOTH_ORDERS = "raw", "both_orders"
MAX_LABELS = 64  # label ids of one request (each a column read at every item)


@dataclasses.dataclass(frozen=True)
class ScoringRequest:
  query: str | list[int]
  items: list[str] | list[list[int]]
  label_ids: tuple[int, ...] | None  # None: label_tokens, resolved by the tokenizer
  label_tokens: tuple[str, ...] | None
  apply_softmax: bool
  item_first: bool
  add_special_tokens: bool
  form: str
  reference: str | None
  request_id: str
  model: str | None
  priority: int


def _flag(body: dict, field: str, default: bool) -> bool:
  value = body.get(field, default)
  if value is None:
    return default
  if not isinstance(value, bool):
    raise RequestError(400, f"{field}: expected true or false, got {type(value).__name__}")
  return value


def _token_ids(value: Any, where: str, vocab_size: int, allow_empty: bool = True) -> list[int]:
  if not isinstance(value, list) or not all(
      isinstance(t, int) and not isinstance(t, bool) for t in value):
    raise RequestError(400, f"{where}: expected a list of token ids")
  if not value and not allow_empty:
    raise RequestError(400, f"{where}: empty")
  for i, token in enumerate(value):
    if not 0 <= token < vocab_size:
      raise RequestError(400, f"{where}[{i}]: token id {token} is out of the vocabulary "
                              f"range [0, {vocab_size})")
  return value


def _text_or_ids(value: Any, where: str, limits: Limits, vocab_size: int) -> str | list[int]:
  if isinstance(value, list):
    return _token_ids(value, where, vocab_size)
  return text(value, where, limits)


def parse_request(body: Any, limits: Limits, vocab_size: int) -> ScoringRequest:
  """A checked request; every fault a 4xx naming the field. Fields vLLM takes and that do
  not change a score (temperature, top_k, top_p from its first protocol) are ignored as
  vLLM ignores them."""
  if not isinstance(body, dict):
    raise RequestError(400, "body: expected a JSON object")
  form = body.get("form", RAW)
  if form not in (RAW, BOTH_ORDERS):
    raise RequestError(400, f"form: expected {RAW!r} or {BOTH_ORDERS!r}, got {form!r}"[:200])
  items = body.get("items")
  if not isinstance(items, list) or not items:
    raise RequestError(400, "items: expected a non-empty list")
  if len(items) > limits.max_pairs:
    raise RequestError(413, f"items: {len(items)} items exceeds max_pairs={limits.max_pairs}")
  if form == BOTH_ORDERS:
    query = text(body.get("query"), "query", limits)
    items = [text(item, f"items[{i}]", limits) for i, item in enumerate(items)]
  else:
    query = _text_or_ids(body.get("query"), "query", limits, vocab_size)
    items = [_text_or_ids(item, f"items[{i}]", limits, vocab_size)
             for i, item in enumerate(items)]
    if len({isinstance(item, str) for item in items}) > 1:
      raise RequestError(400, "items: all text or all token ids, not a mix")
  reference = body.get("reference")
  if reference is not None:
    if form != BOTH_ORDERS:
      raise RequestError(400, "reference: only with form='both_orders'")
    reference = text(reference, "reference", limits)
  elif form == BOTH_ORDERS and len(items) != 2:
    raise RequestError(400, f"items: form='both_orders' scores two responses against each "
                            f"other, or each against `reference`; got {len(items)} items and "
                            "no reference")
  given = [field for field in ("label_token_ids", "label_tokens") if field in body]
  if len(given) == 2 or (not given and form == RAW):
    raise RequestError(400, "label_token_ids: give the label tokens as ids "
                            "(label_token_ids) or as text (label_tokens), one of the two")
  label_ids = label_tokens = None
  if "label_token_ids" in body:
    label_ids = tuple(_token_ids(body["label_token_ids"], "label_token_ids", vocab_size,
                                 allow_empty=False))
  elif "label_tokens" in body:
    value = body["label_tokens"]
    if not isinstance(value, list) or not value:
      raise RequestError(400, "label_tokens: expected a non-empty list of strings")
    label_tokens = tuple(text(t, f"label_tokens[{i}]", limits) for i, t in enumerate(value))
  if len(label_ids or label_tokens or ()) > MAX_LABELS:
    raise RequestError(413, f"label_token_ids: {len(label_ids or label_tokens)} labels "
                            f"exceeds {MAX_LABELS}")
  request_id = body.get("request_id") or uuid.uuid4().hex
  model = body.get("model")
  priority = body.get("priority", 0)
  if not isinstance(request_id, str) or len(request_id) > 200:
    raise RequestError(400, "request_id: expected a string of at most 200 characters")
  if model is not None and not isinstance(model, str):
    raise RequestError(400, "model: expected a string")
  if isinstance(priority, bool) or not isinstance(priority, int):
    raise RequestError(400, "priority: expected an integer")
  return ScoringRequest(query, items, label_ids, label_tokens,
                        _flag(body, "apply_softmax", True), _flag(body, "item_first", False),
                        _flag(body, "add_special_tokens", True), form, reference, request_id,
                        model, priority)


def label_ids_of(tokens: Sequence[str], tokenizer: Any,
                 deadline: float | None = None) -> tuple[int, ...]:
  """The id of each label given as text; a label that is not exactly one token is a 400."""
  check_deadline(deadline, 0)
  ids = []
  for i, token in enumerate(tokens):
    encoded = tokenizer.encode(token, add_special_tokens=False)
    if len(encoded) != 1:
      raise RequestError(400, f"label_tokens[{i}]: {token[:40]!r} is {len(encoded)} tokens "
                              "for this tokenizer, not one; give its id in label_token_ids")
    ids.append(encoded[0])
  return tuple(ids)


def prompts_of(request: ScoringRequest, tokenizer: Any, max_tokens: int,
               deadline: float | None = None) -> list[list[int]]:
  """Raw form: the token ids of each item's prompt (query + item, or item + query), as vLLM
  builds them; a prompt over `max_tokens` is a 413 naming its item. Stops with TimeoutError
  once `deadline` (time.monotonic()) passes."""
  query = request.query
  if isinstance(query, str):
    query = tokenizer.encode(query, add_special_tokens=request.add_special_tokens)
  prompts = []
  for i, item in enumerate(request.items):
    check_deadline(deadline, i)
    if isinstance(item, str):
      item = tokenizer.encode(item, add_special_tokens=False)
    prompt = list(item) + list(query) if request.item_first else list(query) + list(item)
    if not prompt:
      raise RequestError(400, f"items[{i}]: the query and item are both empty")
    if len(prompt) > max_tokens:
      raise RequestError(413, f"items[{i}]: the prompt is {len(prompt)} tokens, over this "
                              f"judge's {max_tokens} (query + item; nothing is cut)")
    prompts.append(prompt)
  return prompts


def label_probabilities(logprobs: np.ndarray, apply_softmax: bool) -> np.ndarray:
  """[N, labels] probabilities from full-vocabulary log-probabilities: renormalised over
  the labels (apply_softmax) or as the model gives them."""
  logprobs = np.asarray(logprobs, np.float64)
  if apply_softmax:
    shifted = np.exp(logprobs - logprobs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
  return np.exp(logprobs)


def response(request: ScoringRequest, scores: Sequence[float], prompt_tokens: int,
             model_name: str) -> dict:
  """vLLM's GenerativeScoringResponse. Usage counts one completion token an item, the
  next-token position read (vLLM counts the one token it samples there)."""
  return {"id": f"generative-scoring-{request.request_id}", "object": "list",
          "created": int(time.time()), "model": model_name,
          "data": [{"index": i, "object": "score", "score": float(s)}
                   for i, s in enumerate(scores)],
          "usage": {"prompt_tokens": int(prompt_tokens),
                    "total_tokens": int(prompt_tokens) + len(scores),
                    "completion_tokens": len(scores)}}


ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError",
               404: "NotFoundError", 408: "RequestTimeoutError", 413: "BadRequestError",
               415: "BadRequestError", 422: "BadRequestError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str) -> dict:
  """vLLM's ErrorResponse shape, so a vLLM client reads our errors as it reads its own."""
  return {"error": {"message": message, "type": ERROR_TYPES.get(status, "InternalServerError"),
                    "param": None, "code": status}}


class Route:
  """The route's handler over a RewardServer's queues, limits and compile gate."""

  def __init__(self, server: Any):
    self.server = server
    self.tokenizer = copy.deepcopy(server.reward.tokenizer)  # the host thread's own
    self.logprob_shapes: set[tuple] = set()

  async def answer(self, body: Any, deadline: float) -> dict:
    """The judge's own labels with apply_softmax run its compiled verdict readout; other
    labels a full-vocabulary readout whose new shapes pass the server's compile gate."""
    server = self.server
    scorer = server.reward.scorer
    request = parse_request(body, server.limits, server.reward.model.config.vocab_size)
    if request.model is not None and request.model != server.model_name:
      raise RequestError(404, f"model: {request.model[:100]!r} is not served here (this "
                              f"server is {server.model_name!r})")
    lane = BULK if request.priority > 0 else INTERACTIVE
    labels = request.label_ids
    if request.label_tokens is not None:
      labels = await server.host.run(label_ids_of, request.label_tokens, self.tokenizer,
                                     deadline=deadline)
    if request.form == BOTH_ORDERS:
      return await self.both_order_scores(request, labels, deadline, lane)
    prompts = await server.host.run(prompts_of, request, self.tokenizer,
                                    min(server.limits.max_input_tokens, server.reward.max_len),
                                    deadline=deadline)
    if labels == scorer.label_ids and request.apply_softmax:
      probs = await server.batcher.call(functools.partial(scorer.probs_of_ids, prompts),
                                        deadline, lane)
    else:
      for shape in scorer.logprob_shapes([len(p) for p in prompts], len(labels)) - \
          self.logprob_shapes:
        server.compile_gate.admit("generative_scoring", shape)
        self.logprob_shapes.add(shape)
      logprobs = await server.batcher.call(
          functools.partial(scorer.next_token_logprobs, prompts, labels), deadline, lane)
      probs = label_probabilities(logprobs, request.apply_softmax)
    return response(request, probs[:, 0], sum(map(len, prompts)), server.model_name)

  async def both_order_scores(self, request: ScoringRequest, labels: tuple[int, ...] | None,
                              deadline: float, lane: str) -> dict:
    """GRAM's form: each response's both-order score, against the other or `reference`;
    each item also says whether its judging prompts were trimmed to the judge's length."""
    reward = self.server.reward
    if labels is not None and labels != reward.scorer.label_ids:
      raise RequestError(400, f"label_token_ids: form='both_orders' reads the judge's own "
                              f"labels {'/'.join(reward.labels)} (ids "
                              f"{list(reward.scorer.label_ids)}); send those or none")
    if request.reference is not None:
      triples = [(request.query, item, request.reference) for item in request.items]
    else:
      triples = [(request.query, *request.items)]
    rows = await self.server.prepare(triples, "items", deadline)
    scores, trimmed = await self.server.scores(rows, deadline, lane)
    if request.reference is not None:
      values, cut = scores[:, 0], trimmed
    else:
      values, cut = scores[0], [trimmed[0]] * 2
    tokens = sum(len(r.first) + len(r.second) for r in rows if isinstance(r, EncodedPair))
    answer = response(request, values, tokens, self.server.model_name)
    for entry, was_cut in zip(answer["data"], cut):
      entry["trimmed"] = bool(was_cut)
    return answer
