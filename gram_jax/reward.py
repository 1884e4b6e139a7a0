"""RewardModel: read rewards from a generative judge, as the official GRAM scorer does.

For a pair (r1, r2) both orders are judged; at the verdict position the softmax over the two
label tokens gives P(A), P(B); score(r1) = mean(P(A | r1 first), P(B | r1 second)) and
score(r2) likewise. Prompts are length-bucketed and left-padded, so a handful of jitted shapes
serve any input; on a mesh the batch splits over the data axes and the weights stay sharded.

A GRAM-R² model (`reasoning` set) first writes a rationale for each order, and the label
probabilities are read after it (reasoning.ReasoningJudge); score, score_batch and rank then
go through that path. Exports of self-trained models carry a `judge.json` that says so.
"""
import dataclasses
import functools
import itertools
import json
import os
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gram_jax import objectives, templates
from gram_jax.batching import bucket_length, bucket_widths, left_pad
from gram_jax.errors import GramError
from gram_jax.judge import JudgeEncoder
from gram_jax.models.decoder import Decoder
from gram_jax.pretrained import load_pretrained
from gram_jax.tokenizer import load_tokenizer

Pair = tuple[str, str, str]  # (prompt, response_a, response_b)
def as_pair(item: Any) -> Pair:
  if isinstance(item, dict):
    return item["prompt"], item["response_a"], item["response_b"]
  prompt, a, b = item
  return prompt, a, b


@functools.partial(jax.jit, static_argnums=(0, 4))
def _label_probs(graphdef: nnx.GraphDef, params: Any, input_ids: jax.Array,
                 attention_mask: jax.Array, label_ids: tuple[int, ...]) -> jax.Array:
  model = nnx.merge(graphdef, params)
  logits = objectives.verdict_logits(model, input_ids, attention_mask, label_ids)
  return jax.nn.softmax(logits, axis=-1)


JUDGE_CARD = "judge.json"  # beside an exported model: how to read it as a judge


@dataclasses.dataclass(frozen=True)
class Reasoning:
  """How a GRAM-R² model is read: it writes a rationale, then the verdict."""
  rationale_format: str = "answer_tag"
  max_new_tokens: int = 1024
  temperature: float = 0.0


def write_judge_card(path: str, template: str, labels: Sequence[str],
                     reasoning: Reasoning | None) -> None:
  card = {"template": template, "labels": list(labels),
          "reasoning": dataclasses.asdict(reasoning) if reasoning else None}
  with open(os.path.join(path, JUDGE_CARD), "w", encoding="utf-8") as f:
    json.dump(card, f, indent=2)


def read_judge_card(path: str) -> dict:
  """The judge settings saved with a model, or {} (e.g. an HF checkpoint from elsewhere)."""
  card_path = os.path.join(path, JUDGE_CARD)
  if not os.path.isfile(card_path):
    return {}
  try:
    with open(card_path, encoding="utf-8") as f:
      card = json.load(f)
    if card.get("reasoning") is not None:
      card["reasoning"] = Reasoning(**card["reasoning"])
    return card
  except (json.JSONDecodeError, TypeError, AttributeError) as e:
    raise GramError(f"{card_path}: not a valid judge card ({e})") from None


@dataclasses.dataclass
class RankResult:
  best: int  # index of the best response
  order: list[int]  # indices best first (round robin: total order; else best first only)
  scores: list[float]  # per-response aggregate used for the decision
  comparisons: int


class RewardModel:
  def __init__(self, model: Decoder, tokenizer: Any, max_len: int = 2048, batch_size: int = 16,
               template: str = templates.GRAM_JUDGE_PROMPT, labels: Sequence[str] = ("A", "B"),
               chat_template: str | None = None, mesh: Mesh | None = None,
               reasoning: Reasoning | None = None):
    self.graphdef, self.params = nnx.split(model)
    self.tokenizer, self.max_len, self.mesh = tokenizer, max_len, mesh
    self.encoder = JudgeEncoder(tokenizer, max_len, template, labels, chat_template)
    self.label_ids, self.labels = tuple(self.encoder.label_ids), tuple(labels)
    data_parallel = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]
    self.batch_size = -(-batch_size // data_parallel) * data_parallel
    self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    self.trimmed = 0  # pairs trimmed to fit max_len since the last reset
    self.reasoning = reasoning
    self.reasoner = None
    if reasoning is not None:
      from gram_jax.reasoning import ReasoningJudge  # it builds on this module
      self.reasoner = ReasoningJudge(model, tokenizer, template, reasoning.rationale_format,
                                     labels, batch_size, max_len, reasoning.max_new_tokens,
                                     chat_template, mesh)

  @classmethod
  def from_pretrained(cls, path: str, mesh: Mesh | None = None, dtype: str | None = None,
                      compute_dtype: str | None = None, prefer_card: bool = False,
                      **kwargs: Any) -> "RewardModel":
    """From an HF directory, a gram_jax checkpoint or a run directory (tokenizer included).

    The template, labels and reasoning saved in the model's judge.json are the defaults;
    keyword arguments override them (e.g. `reasoning=Reasoning()` with
    `template=templates.GRAM_RR_PROMPT` for the released GRAM-RR checkpoints), unless
    `prefer_card` (stages pass their configured defaults so, and the card wins)."""
    card = read_judge_card(path)
    settings = {**kwargs, **card} if prefer_card else {**card, **kwargs}
    if "labels" in settings:
      settings["labels"] = tuple(settings["labels"])
    model = load_pretrained(path, dtype=dtype, mesh=mesh, compute_dtype=compute_dtype)
    return cls(model, load_tokenizer(path), mesh=mesh, **settings)

  def _put(self, array: np.ndarray) -> jax.Array:
    if self.mesh is None:
      return jnp.asarray(array)
    return jax.device_put(array, NamedSharding(self.mesh, PartitionSpec(("data", "fsdp"))))

  def label_probs(self, triples: Sequence[Pair],
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """P(label) at the verdict position for each (prompt, A, B) [len(triples), labels], and
    which prompts had to be trimmed to max_len."""
    encoded, trimmed = self.encoder.encode_many(triples)
    return self.probs_of_ids(encoded, progress), trimmed

  def probs_of_ids(self, encoded: Sequence[Sequence[int]], progress: bool = False) -> np.ndarray:
    """Label probabilities after each token sequence (its last token is the verdict position)."""
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    probs = np.zeros((len(encoded), len(self.label_ids)), np.float32)
    bar = tqdm.tqdm(total=len(encoded), unit="prompt", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(order), self.batch_size):
      rows = order[start:start + self.batch_size]
      width = bucket_length(max(len(encoded[i]) for i in rows), self.max_len)
      ids, mask = left_pad([encoded[i] for i in rows], self.batch_size, width, self.pad_id)
      batch_probs = _label_probs(self.graphdef, self.params, self._put(ids), self._put(mask),
                                 self.label_ids)
      probs[rows] = np.asarray(batch_probs)[:len(rows)]
      bar.update(len(rows))
    bar.close()
    return probs

  def warm_up(self) -> int:
    """Compiles the verdict readout for every length bucket (a server calls it before it
    listens, so no request waits for a compile); returns how many shapes."""
    widths = bucket_widths(self.max_len)
    for width in widths:
      ids, mask = left_pad([[self.pad_id]], self.batch_size, width, self.pad_id)
      jax.block_until_ready(_label_probs(self.graphdef, self.params, self._put(ids),
                                         self._put(mask), self.label_ids))
    return len(widths)

  def score_batch(self, pairs: Iterable[Any], progress: bool = False) -> np.ndarray:
    """Both-order scores [N, 2] = (score of response_a, score of response_b)."""
    scores, trimmed = self.score_pairs(pairs, progress)
    self.trimmed += int(trimmed.sum())
    return scores

  def score_pairs(self, pairs: Iterable[Any],
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both-order scores [N, 2] and whether each pair was trimmed to fit max_len [N]."""
    pairs = [as_pair(p) for p in pairs]
    if not pairs:
      return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    for i, (prompt, a, b) in enumerate(pairs):
      if not all(isinstance(x, str) for x in (prompt, a, b)):
        raise GramError(f"pair {i}: prompt and responses must be strings")
    if self.reasoner is not None:
      judged = self.judge_batch(pairs)
      return (np.array([[j.score_a, j.score_b] for j in judged], np.float32),
              np.zeros(len(pairs), bool))
    both = [(p, a, b) for p, a, b in pairs] + [(p, b, a) for p, a, b in pairs]
    probs, trimmed = self.label_probs(both, progress)
    first, second = probs[:len(pairs)], probs[len(pairs):]
    score_a = (first[:, 0] + second[:, 1]) / 2
    score_b = (first[:, 1] + second[:, 0]) / 2
    return (np.stack([score_a, score_b], axis=1),
            np.asarray(trimmed[:len(pairs)] | trimmed[len(pairs):], bool))

  def judge_batch(self, pairs: Iterable[Any], seed: int = 0) -> list[Any]:
    """A PairJudgment per pair: rationales and verdicts of both orders, both-order scores.
    A model without reasoning writes no rationale; its verdicts follow its scores."""
    pairs = [as_pair(p) for p in pairs]
    if self.reasoner is not None:
      from gram_jax.generate import Sampling
      return self.reasoner.judge_batch(
          pairs, Sampling(temperature=self.reasoning.temperature), seed)
    from gram_jax.reasoning import PairJudgment
    labels = self.labels
    judged = []
    for score_a, score_b in self.score_batch(pairs):
      first = labels[0] if score_a > score_b else labels[1]
      second = labels[1] if first == labels[0] else labels[0]
      judged.append(PairJudgment(("", ""), (first, second), float(score_a), float(score_b)))
    return judged

  def judge(self, prompt: str, response_a: str, response_b: str, seed: int = 0) -> Any:
    """Rationale (one per order), verdicts and both-order scores of one pair."""
    return self.judge_batch([(prompt, response_a, response_b)], seed)[0]

  def score(self, prompt: str, response_a: str, response_b: str) -> tuple[float, float]:
    score_a, score_b = self.score_batch([(prompt, response_a, response_b)])[0]
    return float(score_a), float(score_b)

  def rank(self, prompt: str, responses: Sequence[str], method: str = "linear") -> RankResult:
    """Best-of-n. linear: the official scan (n-1 calls); knockout: batched rounds;
    round_robin: every pair in one batch, ordered by summed pairwise scores."""
    if not responses:
      raise GramError("rank needs at least one response")
    if method == "linear":
      return self._rank_linear(prompt, responses)
    if method == "knockout":
      return self._rank_knockout(prompt, responses)
    if method == "round_robin":
      return self._rank_round_robin(prompt, responses)
    raise GramError(f"unknown rank method {method!r} (linear, knockout, round_robin)")

  def _rank_linear(self, prompt: str, responses: Sequence[str]) -> RankResult:
    best, scores = 0, [0.0] * len(responses)
    for challenger in range(1, len(responses)):
      keep, new = self.score(prompt, responses[best], responses[challenger])
      scores[best], scores[challenger] = keep, new
      if new > keep:
        best = challenger
    return RankResult(best, [best], scores, len(responses) - 1)

  def _rank_knockout(self, prompt: str, responses: Sequence[str]) -> RankResult:
    alive, scores, calls = list(range(len(responses))), [0.0] * len(responses), 0
    while len(alive) > 1:
      games = list(zip(alive[0::2], alive[1::2]))
      results = self.score_batch([(prompt, responses[i], responses[j]) for i, j in games])
      calls += len(games)
      winners = []
      for (i, j), (si, sj) in zip(games, results):
        scores[i], scores[j] = float(si), float(sj)
        winners.append(j if sj > si else i)
      alive = winners + ([alive[-1]] if len(alive) % 2 else [])
    return RankResult(alive[0], [alive[0]], scores, calls)

  def _rank_round_robin(self, prompt: str, responses: Sequence[str]) -> RankResult:
    games = list(itertools.combinations(range(len(responses)), 2))
    results = self.score_batch([(prompt, responses[i], responses[j]) for i, j in games])
    totals = np.zeros(len(responses))
    for (i, j), (si, sj) in zip(games, results):
      totals[i] += si
      totals[j] += sj
    order = [int(i) for i in np.argsort(-totals, kind="stable")]
    return RankResult(order[0], order, totals.tolist(), len(games))
