"""The reward server's request bodies, checked: every limit and every malformed field answers
4xx naming the field, before any work is queued. Pure functions, no model."""
import dataclasses
from typing import Any

from gram_jax.inference import ranking
from gram_jax.text import chat_markup


@dataclasses.dataclass(frozen=True)
class Limits:
  max_body_bytes: int = 4 << 20
  max_pairs: int = 256  # pairs, responses to rank, completions of a group, in one request
  max_text_chars: int = 100_000  # one prompt or response
  max_input_tokens: int = 8192  # one judging prompt (GRAM-R²: prompt + both responses)
  max_comparisons: int = 2048  # pairs one /rank or /group_reward may make the judge score
  max_batch_pairs: int = 64  # pairs scored together across requests
  max_wait_ms: float = 5.0
  max_queue_pairs: int = 4096  # pairs waiting for the device; beyond: 503 + Retry-After
  max_queued_calls: int = 16  # device calls waiting (chat, references, raw scoring)
  max_host_queue: int = 64  # requests waiting for the tokenizer thread; beyond: 503
  request_timeout_s: float = 120.0  # deadline of each request, queueing included
  body_timeout_s: float = 30.0  # to receive a request body
  max_connections: int = 256  # open connections; beyond: the longest idle (no request in
                               # progress) is closed to make room, else 503 and closed
  max_connections_per_peer: int = 128  # open connections from one address (0: no cap);
                                       # beyond: that address's own longest idle makes room
  header_timeout_s: float = 10.0  # a new connection's complete request header, at the latest
  keepalive_s: float = 30.0  # a kept-alive connection idle this long after an answer is closed
  max_new_tokens: int = 1024  # /v1/chat/completions max_tokens
  max_choices: int = 8  # /v1/chat/completions n
  max_new_shapes_per_minute: int = 4  # chat shapes compiled after start; beyond: 503
  reference_cache: int = 10_000  # prompts whose generated reference is kept


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def _object(body: Any) -> dict:
  if not isinstance(body, dict):
    raise RequestError(400, "body: expected a JSON object")
  return body


def text(value: Any, where: str, limits: Limits) -> str:
  """A string field within max_text_chars that is valid Unicode (JSON may escape a lone
  surrogate such as \\ud800, which no tokenizer can encode)."""
  if not isinstance(value, str):
    raise RequestError(400, f"{where}: expected a string, got {type(value).__name__}")
  if len(value) > limits.max_text_chars:
    raise RequestError(413, f"{where}: {len(value)} characters exceeds max_text_chars="
                            f"{limits.max_text_chars}")
  try:
    value.encode("utf-8")
  except UnicodeEncodeError as e:
    raise RequestError(400, f"{where}: not valid Unicode (lone surrogate at character "
                            f"{e.start})") from None
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


def _number(body: dict, field: str, default: Any, kind: type, low: float, high: float) -> Any:
  value = body.get(field, default)
  if value is None:
    value = default
  # Compared as given, never through float(): a 400-digit integer is out of range, not an
  # OverflowError.
  if isinstance(value, bool) or not isinstance(value, (int, float)) or \
      (kind is int and isinstance(value, float) and not value.is_integer()) or \
      not low <= value <= high:
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}… " \
        f"({len(repr(value))} characters)"
    raise RequestError(400, f"{field}: expected {kind.__name__} in [{low}, {high}], got {shown}")
  return kind(value)


def parse_score_request(body: Any, limits: Limits) -> list[tuple[str, str, str]]:
  pairs = []
  for i, item in enumerate(_list(_object(body), "pairs", limits)):
    if not isinstance(item, dict):
      raise RequestError(400, f"pairs[{i}]: expected an object")
    pairs.append(tuple(text(item.get(k), f"pairs[{i}].{k}", limits)
                       for k in ("prompt", "response_a", "response_b")))
  return pairs


def _prompt_texts_method(body: Any, field: str, limits: Limits, default: str,
                        methods: tuple[str, ...]) -> tuple[dict, str, list[str], str]:
  """The body, its prompt, its list of texts under `field`, and its method (checked)."""
  body = _object(body)
  prompt = text(body.get("prompt"), "prompt", limits)
  texts = [text(t, f"{field}[{i}]", limits) for i, t in enumerate(_list(body, field, limits))]
  method = body.get("method", default)
  if method not in methods:
    raise RequestError(400, f"method: {method!r} not in {', '.join(methods)}")
  return body, prompt, texts, method


def parse_rank_request(body: Any, limits: Limits) -> tuple[str, list[str], str]:
  _, prompt, responses, method = _prompt_texts_method(
      body, "responses", limits, ranking.DEFAULT_METHOD, ranking.METHODS)
  needed = ranking.comparisons(len(responses), method)
  if needed > limits.max_comparisons:
    raise RequestError(413, f"method: {method} over {len(responses)} responses is {needed} "
                            f"comparisons, over max_comparisons={limits.max_comparisons} "
                            "(use knockout or linear: n - 1 comparisons)")
  return prompt, responses, method


@dataclasses.dataclass(frozen=True)
class GroupRequest:
  question: str
  completions: list[str]
  games: list[tuple[int, int]]


def parse_group_request(body: Any, limits: Limits) -> GroupRequest:
  """{prompt, completions[G], method: all_pairs | neighbours, opponents}: the prompt and the
  completions may carry the policy's chat markup (it is stripped)."""
  body, prompt, completions, method = _prompt_texts_method(
      body, "completions", limits, "all_pairs", ranking.GROUP_METHODS)
  opponents = _number(body, "opponents", 4, int, 1, limits.max_pairs)
  games = ranking.group_games(len(completions), method, opponents)
  if len(games) > limits.max_comparisons:
    raise RequestError(413, f"method: {method} over {len(completions)} completions is "
                            f"{len(games)} comparisons, over max_comparisons="
                            f"{limits.max_comparisons} (use method=neighbours)")
  try:
    question = chat_markup.question_of(prompt)
  except ValueError as e:
    raise RequestError(422, f"prompt: {e}") from None
  chat_format = chat_markup.detect(prompt)
  return GroupRequest(question, [chat_markup.answer_of(c, chat_format) for c in completions],
                      games)


@dataclasses.dataclass(frozen=True)
class RewardItem:
  question: str
  answer: str
  reference: str | None  # None: no reference sent ("" and null mean none)


def parse_reward_request(body: Any, limits: Limits) -> list[RewardItem]:
  """OpenRLHF's remote RM body: {"query": [decoded prompt + response], "prompts": [prompt],
  "labels" (or "references"): [reference response, "" or null for none]}. The policy's chat
  markup is stripped from both; a query that does not start with its prompt is a 422."""
  body = _object(body)
  queries = _list(body, "query", limits)
  prompts = body.get("prompts")
  if not isinstance(prompts, list) or len(prompts) != len(queries):
    raise RequestError(400, "prompts: expected a list as long as query")
  field = "references" if body.get("references") is not None else "labels"
  references = body.get(field)
  if references is None:
    references = [None] * len(queries)
  if not isinstance(references, list) or len(references) != len(queries):
    raise RequestError(400, f"{field}: expected a list as long as query (the reference "
                            "response each sample is compared with)")
  items = []
  for i, (query, prompt, reference) in enumerate(zip(queries, prompts, references)):
    query = text(query, f"query[{i}]", limits)
    prompt = text(prompt, f"prompts[{i}]", limits)
    try:
      question, answer = chat_markup.split_query(query, prompt)
    except ValueError as e:
      raise RequestError(422, f"query[{i}]: {e}") from None
    if reference is not None:
      reference = text(reference, f"{field}[{i}]", limits)
      reference = chat_markup.answer_of(reference, chat_markup.detect(prompt)) or None
    items.append(RewardItem(question, answer, reference))
  return items


@dataclasses.dataclass(frozen=True)
class ChatRequest:
  messages: list[dict[str, str]]
  max_tokens: int
  temperature: float
  top_p: float
  n: int
  logprobs: bool
  top_logprobs: int
  seed: int
  stop: list[str]


def _content(value: Any, where: str, limits: Limits) -> str:
  """A message's content: a string, or OpenAI's list of {"type": "text", "text"} parts."""
  if isinstance(value, list):
    parts = []
    for j, part in enumerate(value):
      if not isinstance(part, dict) or part.get("type") != "text":
        raise RequestError(400, f"{where}[{j}]: only text parts are supported")
      parts.append(text(part.get("text"), f"{where}[{j}].text", limits))
    return "".join(parts)
  return text(value, where, limits)


def parse_chat_request(body: Any, limits: Limits) -> ChatRequest:
  """OpenAI chat completions (the fields vLLM clients send; `model` is accepted and ignored)."""
  body = _object(body)
  messages = []
  for i, message in enumerate(_list(body, "messages", limits)):
    if not isinstance(message, dict):
      raise RequestError(400, f"messages[{i}]: expected an object")
    role = message.get("role")
    if role not in ("system", "user", "assistant"):
      raise RequestError(400, f"messages[{i}].role: expected system, user or assistant")
    messages.append({"role": role,
                     "content": _content(message.get("content"), f"messages[{i}].content",
                                         limits)})
  max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
  field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
  max_tokens = _number({field: max_tokens}, field, 16, int, 1, limits.max_new_tokens)
  logprobs = body.get("logprobs", False)
  if not isinstance(logprobs, bool):
    raise RequestError(400, "logprobs: expected true or false")
  stop = body.get("stop") or []
  stop = [stop] if isinstance(stop, str) else stop
  if not isinstance(stop, list) or len(stop) > 4:
    raise RequestError(400, "stop: expected a string or a list of up to 4 strings")
  return ChatRequest(
      messages, max_tokens, _number(body, "temperature", 1.0, float, 0.0, 2.0),
      _number(body, "top_p", 1.0, float, 1e-6, 1.0),
      _number(body, "n", 1, int, 1, limits.max_choices), logprobs,
      _number(body, "top_logprobs", 0, int, 0, 20), _number(body, "seed", 0, int, 0, 2**31 - 1),
      [text(s, f"stop[{i}]", limits) for i, s in enumerate(stop)])
