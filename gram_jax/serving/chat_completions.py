"""OpenAI-compatible chat completions over the judge's own weights, so clients written for a
vLLM-served generative reward model (verl's GenRM reward functions, NeMo-RL's
GENRM_BASE_URL, the `openai` package) can use a gram_jax judge unchanged.

`logprobs` are the model's own log-probabilities of the returned tokens (before temperature,
as vLLM returns them by default), read by one teacher-forced pass after generation; with
`max_tokens=1` and `top_logprobs` a client reads P(A) and P(B) at the verdict position.
Generation lengths are rounded up to a power of two and cut back, so a handful of compiled
shapes serve every max_tokens.
"""
import functools
import time
import uuid
from typing import Any

from gram_jax.inference.generate import Generation, Generator, Sampling, TokenLogprobs
from gram_jax.serving.request_parsing import ChatRequest, RequestError
from gram_jax.inference.scorer import TooLong, check_characters
from gram_jax.text.tokenizer import encode_chat, longest_token_chars


MAX_TOP_LOGPROBS = 20  # OpenAI's bound on top_logprobs


def _token_entry(tokenizer: Any, token_id: int, logprob: float) -> dict:
  token = tokenizer.decode([int(token_id)], skip_special_tokens=False)
  return {"token": token, "logprob": float(logprob), "bytes": list(token.encode("utf-8"))}


def _logprobs_content(tokenizer: Any, ids: list[int], lp: TokenLogprobs, top: int) -> dict:
  content = []
  for t, token_id in enumerate(ids):
    entry = _token_entry(tokenizer, token_id, lp.logprobs[t])
    entry["top_logprobs"] = [_token_entry(tokenizer, i, v) for i, v in
                             zip(lp.top_ids[t][:top], lp.top_logprobs[t][:top])] if top else []
    content.append(entry)
  return {"content": content}


class ChatCompletions:
  """Answers parsed chat requests; `complete` runs on the device thread."""

  def __init__(self, generator: Generator, model_name: str, chat_template: str | None = None):
    self.generator, self.model_name = generator, model_name
    self.tokenizer, self.chat_template = generator.tokenizer, chat_template

  def encode(self, request: ChatRequest, deadline: float | None = None) -> list[int]:
    """The prompt's tokens (host work, off the device thread); 413 past the context, by the
    characters alone where they prove it (nothing tokenised)."""
    limit = self.generator.max_prompt_len
    try:
      check_characters(self.tokenizer, [[m.get("content") or "" for m in request.messages]],
                       limit, self.longest_token)
    except TooLong as e:
      raise RequestError(413, f"messages: {e.count()} exceeds max_len={limit}") from None
    ids = encode_chat(self.tokenizer, request.messages, self.chat_template)
    if len(ids) > self.generator.max_prompt_len:
      raise RequestError(413, f"messages: {len(ids)} tokens exceeds max_len="
                              f"{self.generator.max_prompt_len}")
    return ids

  @functools.cached_property
  def longest_token(self) -> int:
    return longest_token_chars(self.tokenizer)

  def _cut(self, generation: Generation, max_tokens: int) -> Generation:
    """The generation as if it had stopped at max_tokens (it ran to a rounded-up length;
    an end-of-sequence token past max_tokens was never generated)."""
    length = len(generation.token_ids)
    if length < max_tokens or (length == max_tokens and generation.finish_reason != "eos"):
      return generation
    ids = generation.token_ids[:max_tokens]
    return Generation(self.tokenizer.decode(ids, skip_special_tokens=False), ids, "length")

  def complete(self, request: ChatRequest, prompt_ids: list[int]) -> dict:
    """The chat.completion object for one request (n choices)."""
    budget = 1 << (request.max_tokens - 1).bit_length()
    sampling = Sampling(temperature=request.temperature, top_p=request.top_p)
    generations = self.generator.generate([prompt_ids] * request.n, budget, sampling,
                                          request.seed, request.stop, field="messages")
    generations = [self._cut(g, request.max_tokens) for g in generations]
    logprobs = self.generator.continuation_logprobs(  # top-20 always, sliced on the host:
        [prompt_ids] * request.n, [g.token_ids for g in generations],  # one compiled shape
        MAX_TOP_LOGPROBS) if request.logprobs else [None] * request.n
    choices = [{
        "index": i,
        "message": {"role": "assistant", "content": g.text},
        "finish_reason": "length" if g.finish_reason == "length" else "stop",
        "logprobs": None if lp is None else _logprobs_content(
            self.tokenizer, g.token_ids, lp, request.top_logprobs),
    } for i, (g, lp) in enumerate(zip(generations, logprobs))]
    completion_tokens = sum(len(g.token_ids) for g in generations)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model_name, "choices": choices,
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens,
                      "total_tokens": len(prompt_ids) + completion_tokens}}
