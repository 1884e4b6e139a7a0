"""GRAM-R² judging: rationales and verdicts of a pair, in one order or both, k samples each.

Each judgment is a generated reply whose verdict is the letter parsed from <answer>; after
its rationale, P(A)/P(B) is also read at the answer position (a continuous score, usable as
an RLHF reward). A pair's verdict is the majority over all its judgments (voting@k); with one
order (the released protocol) a tie goes to the response shown first, with both orders a
tie is no verdict.
"""
import dataclasses
from typing import Any, Sequence

import numpy as np
from jax.sharding import Mesh

from gram_jax.data.encode import JudgeEncoder
from gram_jax.errors import GramError
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
  judgments: tuple[Judgment, ...]  # the first order's k samples, then the other order's
  labels: tuple[str, ...] = ("A", "B")
  trimmed: bool = False  # the judging prompt had to be trimmed to fit
  orders: int = 2  # 1: every judgment saw the pair in one order (the release protocol)

  def order_vote(self, swapped_order: bool) -> Vote:
    return count(j.pick(self.labels) for j in self.judgments if j.swapped == swapped_order)

  @property
  def vote(self) -> Vote:
    """Votes over every judgment (voting@k)."""
    return count(j.pick(self.labels) for j in self.judgments)

  @property
  def winner(self) -> int | None:
    """The majority's response (0 = response_a). A tie: with one order, the response shown
    first (the release's rule); with both orders, None (no verdict)."""
    vote = self.vote
    if vote.winner is not None or self.orders == 2 or not vote.valid:
      return vote.winner
    return 1 if self.judgments[0].swapped else 0

  @property
  def first_vote(self) -> Vote:
    """Votes of the first sample of each order only (the single-judgment verdict)."""
    shown = list(dict.fromkeys(j.swapped for j in self.judgments))
    firsts = [next(j for j in self.judgments if j.swapped == s) for s in shown]
    return count(j.pick(self.labels) for j in firsts)

  @property
  def consistent(self) -> bool | None:
    """Whether both orders pick the same response (position consistency); None when the
    pair was judged in one order only."""
    if self.orders == 1:
      return None
    return position_consistent(self.order_vote(False), self.order_vote(True))

  def flipped(self) -> "PairJudgment":
    """The same judgments read with response_a and response_b exchanged (a caller that
    showed the pair as (b, a) maps the verdicts back to its own orientation)."""
    return dataclasses.replace(self, judgments=tuple(
        dataclasses.replace(j, swapped=not j.swapped) for j in self.judgments))

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
    """The winner's label in the pair's own orientation; None without a winner."""
    winner = self.winner
    return None if winner is None else self.labels[winner]

  def _firsts(self) -> list[Judgment]:
    """The first judgment of each order judged (response_a first, then swapped)."""
    return [next(j for j in self.judgments if j.swapped == s) for s in (False, True)
            if any(j.swapped == s for j in self.judgments)]

  @property
  def rationales(self) -> tuple[str, ...]:
    """The first rationale of each order judged (response_a first, then swapped)."""
    return tuple(j.rationale for j in self._firsts())

  @property
  def verdicts(self) -> tuple[str | None, ...]:
    """The first verdict of each order judged, as written in that order."""
    return tuple(j.verdict for j in self._firsts())


_CLOSE = {"answer_tag": "\n</think>\n", "preferred_line": "\n"}  # a reply cut before its answer


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
    # The verdict is read after prompt + reply + (when no answer was written) the closing
    # text. Re-tokenising the decoded reply can grow it (a byte token that decodes to U+FFFD
    # re-encodes as three), so the cap is generous; it is a limit, not a padded shape.
    closing = encode_plain(tokenizer, rationale.verdict_prefix(_CLOSE[fmt], fmt))
    self.scorer = VerdictScorer(model, tokenizer, max_len + 4 * max_new_tokens + len(closing),
                                batch_size, template, labels, chat_template, mesh)

  def _verdict_ids(self, prompt_ids: list[int], reply: str) -> list[int]:
    """The prompt, the reply up to its answer opener: the label token comes next."""
    before = rationale.reply_before_verdict(reply, self.fmt)
    if before is None:  # no answer written: close the rationale and ask for the verdict
      before = reply + _CLOSE[self.fmt]
    ids = prompt_ids + encode_plain(self.tokenizer, rationale.verdict_prefix(before, self.fmt))
    if len(ids) > self.scorer.max_len:  # a cut from the left would drop the prompt's head
      raise GramError(f"a re-tokenised reply of at most max_new_tokens={self.max_new_tokens} "
                      f"tokens grew to {len(ids) - len(prompt_ids)} tokens, over the "
                      f"{self.scorer.max_len}-token budget of the verdict read after it")
    return ids

  def judge_batch(self, pairs: Sequence[Any], sampling: Sampling = Sampling(), seed: int = 0,
                  first_index: int = 0, samples: int = 1, orders: int = 2
                  ) -> list[PairJudgment]:
    """`samples` judgments of each pair in its given order (response_a as A), and with
    `orders=2` as many with the responses swapped. Pair i, order o, sample s draws with key
    (seed, (orders (first_index + i) + o) samples + s), so a pool judged in chunks gets the
    same judgments as in one call."""
    pairs: list[Pair] = as_pairs(pairs)
    shown = [t for pair in (zip(pairs, swapped(pairs)) if orders == 2 else zip(pairs))
             for t in pair]
    encoded, trimmed = self.prompts.encode_many(shown)
    prompts = [ids for ids in encoded for _ in range(samples)]
    replies = [g.text for g in self.generator.generate(
        prompts, self.max_new_tokens, sampling, seed,
        first_index=orders * samples * first_index, field="judging prompts")]
    probs = self.scorer.probs_of_ids([self._verdict_ids(p, r)
                                      for p, r in zip(prompts, replies)])
    judgments = []
    for row, (reply, p) in enumerate(zip(replies, probs)):
      parsed = rationale.parse(reply, self.labels, self.fmt)
      is_swapped = (row // samples) % orders == 1
      judgments.append(Judgment(is_swapped, reply, parsed.rationale, parsed.verdict,
                                (float(p[0]), float(p[1]))))
    per_pair = orders * samples
    return [PairJudgment(tuple(judgments[i * per_pair:(i + 1) * per_pair]), self.labels,
                         bool(trimmed[orders * i:orders * (i + 1)].any()), orders)
            for i in range(len(pairs))]
