"""RewardModel: the user's handle on a generative judge (GRAM or GRAM-R²).

A GRAM model is read as the official scorer does: both orders, softmax over the label
tokens at the verdict position, averaged (gram_jax.inference.scorer). A GRAM-R² model
(`reasoning` set) first writes `votes` rationales, in the pair's given order (`orders=1`,
the released protocol) or half in each order (`orders=2`); its scores are the vote shares of
the parsed verdicts (or, with `score='probability'`, the label probabilities read after each
rationale). Models trained by gram_jax carry a judge card (judge.json) that says how they
are read.
"""
import copy
import dataclasses
import functools
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from jax.sharding import Mesh

from gram_jax.inference import ranking
from gram_jax.inference.generate import Sampling
from gram_jax.inference.reasoning import PairJudgment, RationaleJudge, verdict_judgments
from gram_jax.inference.scorer import (TooLong, VerdictScorer, as_pairs, check_characters,
                                       check_deadline, host_chunks)
from gram_jax.judge_card import (DEFAULT_PROMPT_LEN, Reasoning, judge_prompt, prompt_name,
                                 read_judge_card)
from gram_jax.models.decoder import Decoder
from gram_jax.pretrained import load_pretrained, load_tokenizer


_UNSET = object()


@dataclasses.dataclass(frozen=True)
class ReasoningRow:
  """A prepared pair for a reasoning judge, with the readout its caller asked for."""
  pair: tuple[str, str, str]
  readout: str  # judge_card.SCORES


def judge_settings(card: dict, template: str | None = None,
                   labels: Sequence[str] | None = None, chat_template: str | None = None,
                   reasoning: Any = _UNSET, template_field: str = "template",
                   reasoning_field: str = "reasoning") -> dict:
  """The one precedence rule for how a saved judge is read: what the caller names wins, then
  the judge card's, then the default (the GRAM prompt, or GRAM-RR for a reasoning judge;
  labels A/B; the tokenizer's chat template; no reasoning). None names nothing, except for
  `reasoning`, where None names a verdict judge: leave it out for the card's."""
  reasoning = card.get("reasoning") if reasoning is _UNSET else reasoning
  return {"template": judge_prompt(template, reasoning, card, template_field, reasoning_field),
          "labels": tuple(labels or card.get("labels") or ("A", "B")),
          "chat_template": chat_template or card.get("chat_template") or None,
          "reasoning": reasoning}


class RewardModel:
  """`template` None: the prompt `judge_card.judge_prompt` picks (GRAM-RR for a reasoning
  judge, else GRAM); `max_len` None: the reasoning judge's prompt budget, else the model's
  context (at least 2,048): a verdict judge reads prompts uncut, as the official evaluation
  does, unless the caller caps them."""

  def __init__(self, model: Decoder, tokenizer: Any, max_len: int | None = None,
               batch_size: int = 16, template: str | None = None,
               labels: Sequence[str] = ("A", "B"), chat_template: str | None = None,
               mesh: Mesh | None = None, reasoning: Reasoning | None = None):
    template = judge_prompt(template, reasoning)
    max_len = max_len or (reasoning.prompt_len() if reasoning else
                          max(model.config.max_position_embeddings, DEFAULT_PROMPT_LEN))
    self.model = model
    self.scorer = VerdictScorer(model, tokenizer, max_len, batch_size, template, labels,
                                chat_template, mesh)
    self.reasoning = reasoning
    self.reasoner = None if reasoning is None else RationaleJudge(
        model, tokenizer, template, reasoning.rationale_format, labels, batch_size, max_len,
        reasoning.max_new_tokens, chat_template, mesh)

  # What the judge reads pairs with is the scorer's; these name it without copying it.
  tokenizer = property(lambda self: self.scorer.tokenizer)
  max_len = property(lambda self: self.scorer.max_len)
  mesh = property(lambda self: self.scorer.mesh)
  encoder = property(lambda self: self.scorer.encoder)
  labels = property(lambda self: self.scorer.labels)
  batch_size = property(lambda self: self.scorer.batch_size)

  @classmethod
  def from_pretrained(cls, path: str, mesh: Mesh | None = None, dtype: str | None = None,
                      compute_dtype: str | None = None, template: str | None = None,
                      reasoning: Any = _UNSET, labels: Sequence[str] | None = None,
                      chat_template: str | None = None, template_field: str = "template",
                      reasoning_field: str = "reasoning",
                      attention: Mapping[str, Any] | None = None,
                      card: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> "RewardModel":
    """From an HF directory, a gram_jax checkpoint or a run directory (tokenizer included).

    The prompt, labels, chat template and reasoning saved in the model's judge.json are the
    defaults; what the caller names wins (`judge_settings`). `reasoning=judge_card.RELEASE`
    alone reads a released GRAM-RR checkpoint as its model card does (the GRAM-RR prompt, one
    order, an 8,192-token context). A verdict-only prompt with a reasoning judge is an error
    naming `template_field` and `reasoning_field` (the caller's names for them). `dtype`,
    `compute_dtype` and `attention` say how the model runs (`pretrained.load_pretrained`).
    `card`: the judge card when the caller has read it already (else read here)."""
    settings = judge_settings(read_judge_card(path) if card is None else dict(card), template,
                              labels, chat_template, reasoning, template_field, reasoning_field)
    model = load_pretrained(path, dtype=dtype, mesh=mesh, compute_dtype=compute_dtype,
                            attention=attention)
    return cls(model, load_tokenizer(path), mesh=mesh, **settings, **kwargs)

  def describe(self) -> str:
    """One line for logs and reports: the prompt, labels, chat template and readout."""
    chat = "configured" if self.encoder.chat_template else "the tokenizer's"
    readout = (f"GRAM-R² judge, {self.reasoning.protocol()}" if self.reasoning else
               "GRAM verdict readout (both orders, P(A)/P(B) at the verdict position)")
    return (f"prompt {prompt_name(self.encoder.template)}, labels {'/'.join(self.labels)}, "
            f"{chat} chat template, prompts up to {self.max_len} tokens; {readout}")

  def warm_up(self) -> int:
    """Compiles the verdict readout for every batch shape a call can pick (a server calls it
    before it listens, so no request waits for a compile); returns how many shapes."""
    return self.scorer.warm_up()

  def judge_batch(self, pairs: Iterable[Any], seed: int = 0, first_index: int = 0,
                  orders: int | None = None) -> list[PairJudgment]:
    """A PairJudgment per pair: every judgment of both orders, the vote, both-order scores.
    A verdict-only model writes no rationale: each order's verdict is its likelier label.
    `orders` (None: the judge's protocol) is how many A/B orders a reasoning judge sees."""
    pairs = as_pairs(list(pairs))
    if self.reasoner is not None:
      r = self.reasoning
      return self.reasoner.judge_batch(pairs, Sampling(temperature=r.temperature), seed,
                                       first_index, r.samples_per_order, orders or r.orders)
    first, second, trimmed = self.scorer.order_probs(pairs)
    return verdict_judgments(first, second, self.labels, trimmed)

  def orders_for(self, readout: str) -> int:
    """The A/B orders a reasoning judge reads a pair in for `readout`. The probability score
    is P(A)/P(B) after each rationale averaged over both orders (SPEC §6), whatever orders
    the verdict protocol uses: under the release protocol (one order) a reward read in one
    order would carry the judge's slot preference into every RLHF reward."""
    return 2 if readout == "probability" else self.reasoning.orders

  def judge(self, prompt: str, response_a: str, response_b: str, seed: int = 0) -> PairJudgment:
    """Rationales, verdicts and scores of one pair."""
    return self.judge_batch([(prompt, response_a, response_b)], seed)[0]

  def scores_of(self, judged: Sequence[PairJudgment], readout: str | None = None
                ) -> np.ndarray:
    """[N, 2] scores of judged pairs by `readout` (default: this model's; 'verdict': the
    vote shares, 'probability': P(A)/P(B) after each rationale)."""
    readout = readout or (self.reasoning.score if self.reasoning else "probability")
    if readout == "verdict":
      return np.array([j.vote.scores() for j in judged], np.float32).reshape(-1, 2)
    return np.array([j.probability_scores for j in judged], np.float32).reshape(-1, 2)

  def score_pairs(self, pairs: Iterable[Any], progress: bool = False, seed: int = 0,
                  first_index: int = 0, readout: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N, 2] of (response_a, response_b) and whether each pair was trimmed [N]."""
    pairs = as_pairs(list(pairs))
    if not pairs:
      return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if self.reasoner is not None:
      readout = readout or self.reasoning.score
      judged = self.judge_batch(pairs, seed, first_index, self.orders_for(readout))
      return self.scores_of(judged, readout), np.array([j.trimmed for j in judged], bool)
    return self.scorer.score_encoded(self.scorer.encode_pairs(pairs), progress)

  def prepare(self, pairs: Iterable[Any], max_tokens: int | None = None,
              readout: str | None = None, deadline: float | None = None) -> list:
    """The host work of scoring, done once and off the device thread (a server calls it in
    its tokenizer pool): a GRAM model's judging-prompt tokens, or a GRAM-R² model's checked
    pairs with the readout to score them by (None: the judge's own). Raises TooLong for the
    first pair over max_tokens (the judging prompt, or for GRAM-R² prompt + both responses),
    before later pairs are tokenised, and TimeoutError once `deadline` passes."""
    pairs = as_pairs(list(pairs))
    if self.reasoner is None:
      return self.scorer.encode_pairs(pairs, max_tokens, deadline)
    if max_tokens is not None:
      check_characters(self._counting_tokenizer, pairs, max_tokens, self.scorer.longest_token)
      for start, end in host_chunks(len(pairs)):
        check_deadline(deadline, start)
        chunk = pairs[start:end]
        counts = self._counting_tokenizer([text for pair in chunk for text in pair],
                                          add_special_tokens=False)["input_ids"]
        for i in range(len(chunk)):
          tokens = sum(len(ids) for ids in counts[3 * i:3 * i + 3])
          if tokens > max_tokens:
            raise TooLong(start + i, tokens, max_tokens)
    readout = readout or self.reasoning.score
    return [ReasoningRow(pair, readout) for pair in pairs]

  @functools.cached_property
  def _counting_tokenizer(self) -> Any:
    """A copy for host threads: transformers' fast tokenizers switch special-token splitting
    on the shared object per call, so two threads must not share one."""
    return copy.deepcopy(self.tokenizer)

  def score_prepared(self, rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N, 2] and trimmed flags [N] of `prepare`d rows."""
    if not rows:
      return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if self.reasoner is None:
      return self.scorer.score_encoded(rows)
    scores, trimmed = np.zeros((len(rows), 2), np.float32), np.zeros(len(rows), bool)
    for orders in {self.orders_for(row.readout) for row in rows}:
      index = [i for i, row in enumerate(rows) if self.orders_for(row.readout) == orders]
      judged = self.judge_batch([rows[i].pair for i in index], orders=orders)
      for i, judgment in zip(index, judged):
        scores[i] = self.scores_of([judgment], rows[i].readout)[0]
        trimmed[i] = judgment.trimmed
    return scores, trimmed

  def score_batch(self, pairs: Iterable[Any], progress: bool = False) -> np.ndarray:
    """Scores [N, 2] = (score of response_a, score of response_b); `score_pairs` also says
    which pairs were trimmed to fit."""
    return self.score_pairs(pairs, progress)[0]

  def score(self, prompt: str, response_a: str, response_b: str) -> tuple[float, float]:
    score_a, score_b = self.score_batch([(prompt, response_a, response_b)])[0]
    return float(score_a), float(score_b)

  def rank(self, prompt: str, responses: Sequence[str],
           method: str = ranking.DEFAULT_METHOD) -> ranking.RankResult:
    """Best-of-n (gram_jax.inference.ranking): linear (the official scan), knockout, round_robin
    (win counts) or bradley_terry."""
    return ranking.rank(prompt, responses, self.score_batch, method)
