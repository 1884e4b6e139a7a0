"""GRAM-R² judging: generate a rationale and verdict for both orders, then read P(A)/P(B)
at the answer position for a continuous, both-order score (usable as an RLHF reward)."""
import dataclasses
from typing import Any, Sequence

import numpy as np
from jax.sharding import Mesh

from gram_jax import rationale, templates
from gram_jax.generate import Generator, Sampling
from gram_jax.models.decoder import Decoder
from gram_jax.reward import Pair, RewardModel, as_pair


@dataclasses.dataclass
class PairJudgment:
  rationales: tuple[str, str]  # (response_a shown first, response_b shown first)
  verdicts: tuple[str | None, str | None]  # as written in each order
  score_a: float
  score_b: float

  @property
  def preferred(self) -> str | None:
    """'A' / 'B' (in the pair's own orientation) when both orders agree, else None."""
    first, second = self.verdicts
    flipped = {"A": "B", "B": "A"}.get(second) if second else None
    return first if first is not None and first == flipped else None


class ReasoningJudge:
  def __init__(self, model: Decoder, tokenizer: Any, template: str = templates.GRAM_RR_PROMPT,
               fmt: str = "answer_tag", labels: Sequence[str] = ("A", "B"),
               batch_size: int = 16, max_len: int = 2048, max_new_tokens: int = 512,
               chat_template: str | None = None, mesh: Mesh | None = None):
    self.fmt, self.labels, self.max_new_tokens = fmt, tuple(labels), max_new_tokens
    self.generator = Generator(model, tokenizer, batch_size, max_len, mesh)
    self.scorer = RewardModel(model, tokenizer, max_len + max_new_tokens + 8, batch_size,
                              template, labels, chat_template, mesh)
    self.tokenizer = tokenizer

  def set_params(self, params: Any) -> None:
    self.generator.params = self.scorer.params = params

  def _verdict_ids(self, prompt_text: str, reply: str) -> list[int]:
    before = rationale.reply_before_verdict(reply, self.fmt)
    if before is None:  # no answer written: close the rationale and ask for the verdict
      before = reply + ("\n</think>\n" if self.fmt == "answer_tag" else "\n")
    text = prompt_text + rationale.verdict_prefix(before, self.fmt)
    return self.tokenizer.encode(text, add_special_tokens=False)[-self.scorer.max_len:]

  def judge_batch(self, pairs: Sequence[Any], sampling: Sampling = Sampling(),
                  seed: int = 0, first_index: int = 0) -> list[PairJudgment]:
    """Pair i's two orders sample with keys (seed, 2 (first_index + i)) and (…+ 1), so a
    pool judged in chunks gets the same judgments as in one call."""
    pairs = [as_pair(p) for p in pairs]
    triples: list[Pair] = [t for p, a, b in pairs for t in ((p, a, b), (p, b, a))]
    prompt_texts = [self.scorer.encoder.text(*t) for t in triples]
    replies = [g.text for g in self.generator.generate(
        prompt_texts, self.max_new_tokens, sampling, seed, first_index=2 * first_index)]
    probs = self.scorer.probs_of_ids([self._verdict_ids(p, r)
                                      for p, r in zip(prompt_texts, replies)])
    judged = [rationale.parse(r, self.labels, self.fmt) for r in replies]
    return [PairJudgment((judged[2 * i].rationale, judged[2 * i + 1].rationale),
                         (judged[2 * i].verdict, judged[2 * i + 1].verdict),
                         float((probs[2 * i, 0] + probs[2 * i + 1, 1]) / 2),
                         float((probs[2 * i, 1] + probs[2 * i + 1, 0]) / 2))
            for i in range(len(pairs))]

  def accuracy(self, pairs: Sequence[tuple[str, str, str]]) -> float:
    """Share of (prompt, chosen, rejected) where the chosen response scores higher."""
    judged = self.judge_batch(pairs)
    return float(np.mean([j.score_a > j.score_b for j in judged]))
