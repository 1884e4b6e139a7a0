"""GRAM-R² judging: rationales and verdicts for both orders of a pair, k samples each.

Each judgment is a generated reply whose verdict is the letter parsed from <answer>; after
its rationale, P(A)/P(B) is also read at the answer position (a continuous score, usable as
an RLHF reward). A pair's verdict is the majority over all its judgments (voting@k).
"""
import dataclasses
from typing import Any, Sequence

import numpy as np
from jax.sharding import Mesh

from gram_jax.data.encode import JudgeEncoder
from gram_jax.inference.generate import Generator, Sampling
from gram_jax.inference.scorer import Pair, VerdictScorer, as_pairs, swapped
from gram_jax.inference.voting import Vote, count, oriented, position_consistent
from gram_jax.models.decoder import Decoder
from gram_jax.text import rationale, templates
from gram_jax.text.tokenizer import encode_plain


@dataclasses.dataclass(frozen=True)
class Judgment:
  """One judgment of one order of a pair."""
  swapped: bool  # False: the pair's response_a was shown as A
  reply: str  # the generated text ("" for a verdict-only model)
  rationale: str
  verdict: str | None  # the parsed letter, as written in this order; None = no verdict
  probs: tuple[float, float]  # P(first label), P(second label) at the answer position

  def pick(self, labels: Sequence[str]) -> int | None:
    """The pair's response this judgment prefers (0 = response_a), or None."""
    return oriented(self.verdict, self.swapped, labels)

  def pair_probs(self) -> tuple[float, float]:
    """(P(response_a better), P(response_b better)) in the pair's own orientation."""
    return self.probs[::-1] if self.swapped else self.probs


@dataclasses.dataclass(frozen=True)
class PairJudgment:
  judgments: tuple[Judgment, ...]  # response_a first: k samples; then swapped: k samples
  labels: tuple[str, ...] = ("A", "B")
  trimmed: bool = False  # the judging prompt had to be trimmed to fit

  def order_vote(self, swapped_order: bool) -> Vote:
    return count(j.pick(self.labels) for j in self.judgments if j.swapped == swapped_order)

  @property
  def vote(self) -> Vote:
    """Votes over every judgment of both orders (voting@k)."""
    return count(j.pick(self.labels) for j in self.judgments)

  @property
  def first_vote(self) -> Vote:
    """Votes of the first sample of each order only (the single-judgment verdict)."""
    firsts = [next(j for j in self.judgments if j.swapped == s) for s in (False, True)]
    return count(j.pick(self.labels) for j in firsts)

  @property
  def consistent(self) -> bool:
    """Whether both orders pick the same response (position consistency)."""
    return position_consistent(self.order_vote(False), self.order_vote(True))

  @property
  def probability_scores(self) -> tuple[float, float]:
    """Mean P(response_a), P(response_b) at the answer position over all judgments."""
    a, b = np.mean([j.pair_probs() for j in self.judgments], axis=0)
    return float(a), float(b)

  @property
  def score_a(self) -> float:
    return self.probability_scores[0]

  @property
  def score_b(self) -> float:
    return self.probability_scores[1]

  @property
  def preferred(self) -> str | None:
    """The majority's label in the pair's own orientation; None on a tie or no verdicts."""
    winner = self.vote.winner
    return None if winner is None else self.labels[winner]

  @property
  def rationales(self) -> tuple[str, str]:
    """The first rationale of each order (response_a first, then swapped)."""
    return tuple(next(j.rationale for j in self.judgments if j.swapped == s)
                 for s in (False, True))

  @property
  def verdicts(self) -> tuple[str | None, str | None]:
    """The first verdict of each order, as written in that order."""
    return tuple(next(j.verdict for j in self.judgments if j.swapped == s)
                 for s in (False, True))


def verdict_judgments(first: np.ndarray, second: np.ndarray, labels: Sequence[str],
                      trimmed: Sequence[bool]) -> list[PairJudgment]:
  """PairJudgments of a verdict-only model: each order's verdict is its likelier label."""
  def judgment(probs: np.ndarray, is_swapped: bool) -> Judgment:
    verdict = None if probs[0] == probs[1] else labels[int(np.argmax(probs))]
    return Judgment(is_swapped, "", "", verdict, (float(probs[0]), float(probs[1])))
  return [PairJudgment((judgment(f, False), judgment(s, True)), tuple(labels), bool(t))
          for f, s, t in zip(first, second, trimmed)]


class RationaleJudge:
  def __init__(self, model: Decoder, tokenizer: Any, template: str = templates.GRAM_RR_PROMPT,
               fmt: str = "answer_tag", labels: Sequence[str] = ("A", "B"),
               batch_size: int = 16, max_len: int = 2048, max_new_tokens: int = 512,
               chat_template: str | None = None, mesh: Mesh | None = None):
    self.fmt, self.labels, self.max_new_tokens = fmt, tuple(labels), max_new_tokens
    self.tokenizer = tokenizer
    self.prompts = JudgeEncoder(tokenizer, max_len, template, labels, chat_template)
    self.generator = Generator(model, tokenizer, batch_size, max_len, mesh)
    self.scorer = VerdictScorer(model, tokenizer, max_len + max_new_tokens + 16, batch_size,
                                template, labels, chat_template, mesh)

  def _verdict_ids(self, prompt_ids: list[int], reply: str) -> list[int]:
    """The prompt, the reply up to its answer opener: the label token comes next."""
    before = rationale.reply_before_verdict(reply, self.fmt)
    if before is None:  # no answer written: close the rationale and ask for the verdict
      before = reply + ("\n</think>\n" if self.fmt == "answer_tag" else "\n")
    reply_ids = encode_plain(self.tokenizer, rationale.verdict_prefix(before, self.fmt))
    return (prompt_ids + reply_ids)[-self.scorer.max_len:]

  def judge_batch(self, pairs: Sequence[Any], sampling: Sampling = Sampling(), seed: int = 0,
                  first_index: int = 0, samples: int = 1) -> list[PairJudgment]:
    """`samples` judgments of each order of each pair. Pair i, order o, sample s draws
    with key (seed, (2 (first_index + i) + o) samples + s), so a pool judged in chunks gets
    the same judgments as in one call."""
    pairs: list[Pair] = as_pairs(pairs)
    orders = [t for pair in zip(pairs, swapped(pairs)) for t in pair]
    encoded, trimmed = self.prompts.encode_many(orders)
    prompts = [ids for ids in encoded for _ in range(samples)]
    replies = [g.text for g in self.generator.generate(
        prompts, self.max_new_tokens, sampling, seed, first_index=2 * samples * first_index)]
    probs = self.scorer.probs_of_ids([self._verdict_ids(p, r)
                                      for p, r in zip(prompts, replies)])
    judgments = []
    for row, (reply, p) in enumerate(zip(replies, probs)):
      parsed = rationale.parse(reply, self.labels, self.fmt)
      is_swapped = (row // samples) % 2 == 1
      judgments.append(Judgment(is_swapped, reply, parsed.rationale, parsed.verdict,
                                (float(p[0]), float(p[1]))))
    per_pair = 2 * samples
    return [PairJudgment(tuple(judgments[i * per_pair:(i + 1) * per_pair]), self.labels,
                         bool(trimmed[2 * i] or trimmed[2 * i + 1]))
            for i in range(len(pairs))]
