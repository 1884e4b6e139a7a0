"""The judging prompt as tokens: template + chat template, trimmed to fit, verdict position last.

Encoding tokenises the whole rendered string at once (as the official scorer does), so an
untrimmed pair gets exactly the official tokens; only a pair over the budget is trimmed,
responses first, and the template's markers and the trailing verdict position are kept.
"""
from typing import Any, Sequence

import numpy as np

from gram_jax import templates, truncation
from gram_jax.tokenizer import encode_user_turns, label_token_ids, render_user_turn


class JudgeEncoder:
  def __init__(self, tokenizer: Any, max_len: int, template: str = templates.GRAM_JUDGE_PROMPT,
               labels: Sequence[str] = ("A", "B"), chat_template: str | None = None):
    self.tokenizer, self.max_len, self.template = tokenizer, max_len, template
    self.chat_template = chat_template
    self.label_ids = label_token_ids(tokenizer, labels)

  def text(self, prompt: str, response_a: str, response_b: str) -> str:
    message = templates.fill(self.template, prompt, response_a, response_b)
    return render_user_turn(self.tokenizer, message, self.chat_template)

  def _ids(self, fields: dict[str, str]) -> list[int]:
    return self.encode_all([(fields["prompt"], fields["response_a"], fields["response_b"])])[0]

  def encode_all(self, triples: Sequence[tuple[str, str, str]]) -> list[list[int]]:
    """Untrimmed token ids of many judging prompts; user text stays plain text."""
    values = [{"input": p, "response_a": a, "response_b": b} for p, a, b in triples]
    return encode_user_turns(self.tokenizer, self.template, values, self.chat_template)

  def __call__(self, prompt: str, response_a: str, response_b: str) -> tuple[list[int], bool]:
    """Token ids ending at the verdict position, and whether the pair was trimmed."""
    fields = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    ids = self._ids(fields)
    return (ids, False) if len(ids) <= self.max_len else self.trim(fields)

  def trim(self, fields: dict[str, str]) -> tuple[list[int], bool]:
    fields, _ = truncation.fit_fields(self.tokenizer, fields, lambda f: len(self._ids(f)),
                                      self.max_len)
    return self._ids(fields), True

  def encode_many(self, triples: Sequence[tuple[str, str, str]]
                  ) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of many judging prompts (one batched tokenizer call) and which were trimmed."""
    encoded = self.encode_all(triples)
    trimmed = np.zeros(len(triples), bool)
    for i, ids in enumerate(encoded):
      if len(ids) > self.max_len:
        encoded[i], trimmed[i] = self.trim(dict(zip(("prompt", "response_a", "response_b"),
                                                    triples[i])))
    return encoded, trimmed
