"""GRAM-R² pseudo-labels and the rules of a self-training round, as pure functions
(docs/method.md §6); proof selection (Eq. 5) is in `inference.proving`, the report's
formatting in `stages.self_train_report`.

- rule checks on one sampled judgment: no verdict, broken format, missing rationale,
  rationale too long, rationale that never names the response it picks, rationale that
  calls the other response better than its verdict;
- the pseudo-label: a majority vote over a pair's judgments that pass the rules (both
  orders, k samples each), dropped on a tie, a split vote or low confidence;
- what a round's labeling did (counts per drop reason and rule);
- which round's model is exported;
- task adaptation trains on the target task's own pairs, never on the labeled set again.
"""
import collections
import dataclasses
import functools
import re
from typing import Sequence

import numpy as np

from gram_jax.data.preference import PreferencePair, pair_identity
from gram_jax.data.records import UnlabeledPair
from gram_jax.errors import GramError
from gram_jax.inference.reasoning import PairJudgment
from gram_jax.inference.voting import Vote, count
from gram_jax.text import rationale

# Why a judgment does not vote, in the order they are checked.
JUDGMENT_PROBLEMS = ("no_verdict", "broken_format", "missing_rationale", "too_long",
                     "contradiction", "omits_label")
# Why a pair gets no pseudo-label, in the order they are checked.
DROP_REASONS = ("no_valid_judgment", "tie", "split_vote", "low_confidence")


@functools.lru_cache(maxsize=16)
def _preference_pattern(labels: tuple[str, ...]) -> re.Pattern:
  letters = "|".join(re.escape(label) for label in labels)
  return re.compile(
      r"(?<!\w)(?:(?i:response|assistant|answer|output)\s+)?(" + letters + r")\s+"
      r"(?i:is|was)\s+(?:(?i:the|clearly|much|far|slightly|overall|definitely)\s+)*"
      r"(?i:better|superior|preferred|preferable|stronger)(?!\w)")


def stated_preference(text: str, labels: Sequence[str] = ("A", "B")) -> str | None:
  """The label a rationale last calls better, or None when it calls none better.

  A deliberately simple check: phrases like 'Response B is better', 'Assistant A is the
  better one', 'B is clearly superior'; the letter must be written as the label is (case
  matters), a negation ('is not better') does not match, and the last such phrase counts.
  """
  found = _preference_pattern(tuple(labels)).findall(text)
  return found[-1] if found else None


@functools.lru_cache(maxsize=16)
def _mention_pattern(label: str) -> re.Pattern:
  letter = re.escape(label)
  return re.compile(
      r"(?<!\w)(?i:response|assistant|answer|output|option|candidate)\s+" + letter +
      r"(?!\w)|\(" + letter + r"\)|(?<!\w)" + letter + r"(?:'s|\s+(?i:is|was|has|does|"
      r"provides|gives|offers|correctly|clearly|better|wins))(?!\w)")


def names_label(text: str, label: str) -> bool:
  """Whether a rationale refers to the response labeled `label`: 'Response B',
  'Assistant B', '(B)', 'B is ...', "B's". A bare capital letter is not a reference (the
  article 'A' starts sentences), and the letter's case must match the label's."""
  return _mention_pattern(label).search(text) is not None


def judgment_problem(reply: str, labels: Sequence[str] = ("A", "B"), fmt: str = "answer_tag",
                     max_rationale_chars: int = 2000) -> str | None:
  """Why one generated judgment must not vote (a JUDGMENT_PROBLEMS entry), or None."""
  judged = rationale.parse(reply, labels, fmt)
  if judged.verdict is None:
    return "no_verdict"
  if rationale.broken_format(reply, fmt):
    return "broken_format"
  if not judged.rationale.strip():
    return "missing_rationale"
  if len(judged.rationale) > max_rationale_chars:
    return "too_long"
  stated = stated_preference(judged.rationale, labels)
  if stated is not None and stated != judged.verdict:
    return "contradiction"
  if not names_label(judged.rationale, judged.verdict):
    return "omits_label"
  return None


@dataclasses.dataclass(frozen=True)
class SampledJudgment:
  """One judgment of a pair as the filter sees it, in the pair's own orientation."""
  pick: int | None  # 0 = response_a, 1 = response_b, None = no verdict
  problem: str | None  # a JUDGMENT_PROBLEMS entry, or None
  probs: tuple[float, float]  # P(response_a), P(response_b) at the answer position


@dataclasses.dataclass(frozen=True)
class PseudoLabel:
  pick: int | None  # the majority's response (0 = response_a), None when dropped before
  vote: Vote  # votes of the judgments that pass the rules
  confidence: float  # mean P(pick) at the answer position over the passing judgments
  drop_reason: str | None  # a DROP_REASONS entry, or None when the pair is kept


def pseudo_label(judgments: Sequence[SampledJudgment], min_vote_share: float = 0.5,
                 min_confidence: float = 0.0) -> PseudoLabel:
  """Majority vote over the judgments that pass the rules, then the denoising drops."""
  valid = [j for j in judgments if j.problem is None]
  vote = count(j.pick for j in valid) + Vote(abstained=len(judgments) - len(valid))
  if not valid:
    return PseudoLabel(None, vote, 0.0, "no_valid_judgment")
  pick = vote.winner
  if pick is None:
    return PseudoLabel(None, vote, 0.0, "tie")
  confidence = float(np.mean([j.probs[pick] for j in valid]))
  if vote.share < min_vote_share:
    return PseudoLabel(pick, vote, confidence, "split_vote")
  if confidence < min_confidence:
    return PseudoLabel(pick, vote, confidence, "low_confidence")
  return PseudoLabel(pick, vote, confidence, None)


def keep_most_confident(confidences: Sequence[float | None], fraction: float) -> list[bool]:
  """Marks the `fraction` of all judged pairs with the highest confidence; None = not a
  candidate (already dropped). Ties keep the earlier pair."""
  budget = int(len(confidences) * fraction)
  candidates = [i for i, c in enumerate(confidences) if c is not None]
  ranked = sorted(candidates, key=lambda i: -confidences[i])[:budget]
  chosen = set(ranked)
  return [i in chosen for i in range(len(confidences))]


@dataclasses.dataclass(frozen=True)
class LabelRules:
  """How a round turns judgments into a pseudo-label (config.self_train's denoising)."""
  labels: tuple[str, ...]
  rationale_format: str
  max_rationale_chars: int
  min_vote_share: float
  min_confidence: float


def judged_row(pair: UnlabeledPair, judged: PairJudgment, rules: LabelRules) -> dict:
  """A pair's k judgments per order, each rule-checked, and the pseudo-label they vote."""
  samples = [SampledJudgment(
      j.pick(rules.labels),
      judgment_problem(j.reply, rules.labels, rules.rationale_format,
                                     rules.max_rationale_chars),
      j.pair_probs()) for j in judged.judgments]
  label = pseudo_label(samples, rules.min_vote_share, rules.min_confidence)
  return {"prompt": pair.prompt, "response_a": pair.response_a,
          "response_b": pair.response_b, "gold": pair.extra.get("gold"),
          "trimmed": judged.trimmed,
          "judgments": [{"swapped": j.swapped, "verdict": j.verdict, "problem": s.problem,
                         "p_a": round(s.probs[0], 6)}
                        for j, s in zip(judged.judgments, samples)],
          "votes": [label.vote.for_a, label.vote.for_b], "abstained": label.vote.abstained,
          "vote_share": label.vote.share, "confidence": label.confidence,
          "label": None if label.pick is None else rules.labels[label.pick],
          "drop_reason": label.drop_reason}


def keep_top_fraction(rows: list[dict], fraction: float) -> list[dict]:
  """The rows with the pairs outside the most confident `fraction` of the pool dropped for
  low confidence (`self_train.keep_top_fraction`, instead of a fixed threshold)."""
  keep = keep_most_confident(
      [r["confidence"] if r["drop_reason"] is None else None for r in rows], fraction)
  return [{**row, "drop_reason": "low_confidence"}
          if row["drop_reason"] is None and not kept else row
          for row, kept in zip(rows, keep)]


def round_stats(rows: list[dict]) -> dict:
  """What a round's labeling did: pairs judged and kept, why the rest were dropped, which
  rules the judgments broke, and (on data with gold labels) how often the kept agree."""
  kept = [r for r in rows if r["drop_reason"] is None]
  with_gold = [r for r in kept if r["gold"]]
  problems = collections.Counter(j["problem"] for r in rows for j in r["judgments"]
                                 if j["problem"])
  return {"judged": len(rows), "kept": len(kept),
          "judge_prompts_trimmed": sum(bool(r.get("trimmed")) for r in rows),
          "drop_reasons": {reason: sum(r["drop_reason"] == reason for r in rows)
                           for reason in DROP_REASONS},
          "judgment_problems": {p: problems[p] for p in JUDGMENT_PROBLEMS},
          "judgments": sum(len(r["judgments"]) for r in rows),
          "kept_agree_gold": float(np.mean([r["label"] == r["gold"] for r in with_gold]))
          if with_gold else None}


def check_task_set(task: Sequence[PreferencePair], labeled: Sequence[PreferencePair]) -> None:
  """Task adaptation (the paper's last step) adapts to the target task: a task set whose
  every pair is a labeled (warm-start) pair would only retrain on warm-start data."""
  labeled_ids = {pair_identity(p) for p in labeled}
  if not task:
    raise GramError("config.self_train.task_files: no task pairs for task adaptation (give "
                    "the target task's pairs, or set final_finetune_steps=0)")
  if all(pair_identity(p) in labeled_ids for p in task):
    raise GramError("config.self_train.task_files: every task pair is a labeled_files pair; "
                    "task adaptation would retrain on warm-start data (give the target "
                    "task's own pairs, or set final_finetune_steps=0)")


def check_validation_set(validation: Sequence[PreferencePair],
                         heldout: Sequence[PreferencePair]) -> None:
  """Choosing the exported model on the held-out test would report a selected figure as a
  test figure: the validation pairs must be others."""
  if not validation:
    raise GramError("config.self_train.validation_files: no validation pairs (export="
                    "best_validation chooses the exported model on them)")
  test_ids = {pair_identity(p) for p in heldout}
  shared = sum(pair_identity(p) in test_ids for p in validation)
  if shared:
    raise GramError(f"config.self_train.validation_files: {shared} of {len(validation)} "
                    "validation pairs are held-out test pairs; choose the exported model on "
                    "pairs the report does not test on")


def choose_export(validation_accuracy: Sequence[float | None]) -> int:
  """Which candidate model to export, given each one's validation accuracy (None: not
  measured, i.e. export=final): the best, the later one on a tie; without validation
  figures the last one, as the paper does."""
  measured = [(a, i) for i, a in enumerate(validation_accuracy) if a is not None]
  if not measured:
    return len(validation_accuracy) - 1
  return max(measured)[1]
