"""The slot guard: held-out figures of a judge shown each pair in both orders, and the
warning that the fine-tuning stage logs when the judge answers by slot."""
import numpy as np
import pytest

from gram_jax import configlib, position_bias
from gram_jax.data import preference
from gram_jax.stages import recipes


def test_order_readout_counts_by_hand():
  # Pair 1: content judge (right both orders). Pair 2: always "A" (slot). Pair 3: wrong
  # both orders. Better response is response_a; `second` shows it in slot B.
  first = np.array([[0.8, 0.2], [0.9, 0.1], [0.3, 0.7]])
  second = np.array([[0.3, 0.7], [0.9, 0.1], [0.6, 0.4]])
  figures = position_bias.order_readout(first, second)
  # Both-order scores (better, worse): (0.75, 0.25), (0.5, 0.5), (0.35, 0.65).
  assert figures["accuracy"] == pytest.approx(1 / 3)
  # Verdicts pick the same response in pairs 1 and 3, not in pair 2.
  assert figures["position_consistency"] == pytest.approx(2 / 3)
  assert figures["p_first_slot"] == pytest.approx((0.8 + 0.9 + 0.3 + 0.3 + 0.9 + 0.6) / 6)
  assert figures["pairs"] == 3


def _figures(consistency, accuracy, pairs=400):
  return {"position_consistency": consistency, "accuracy": accuracy, "pairs": pairs,
          "p_first_slot": 0.9}


def test_the_guard_fires_on_a_slot_judge_and_stays_quiet_otherwise():
  base = _figures(0.40, 0.52)
  warning = position_bias.answers_by_slot(_figures(0.05, 0.51), base)
  assert warning == ("the judge answers by slot, not by content: held-out position "
                     "consistency 5.0 % (base model 40.0 %), accuracy 51.0 % on 400 pairs "
                     "(chance ± 5.0), mean P(first slot) 0.90")
  # Far below the base model, though not near zero, at chance: fires.
  assert position_bias.answers_by_slot(_figures(0.15, 0.50), base)
  # Near zero with no base measured: fires.
  assert position_bias.answers_by_slot(_figures(0.05, 0.50))
  # Accuracy beyond chance: the judge reads content, whatever its consistency.
  assert position_bias.answers_by_slot(_figures(0.05, 0.60), base) is None
  # Consistency kept: quiet.
  assert position_bias.answers_by_slot(_figures(0.35, 0.50), base) is None
  assert position_bias.answers_by_slot(_figures(0.15, 0.50)) is None


def test_fine_tuning_evaluations_log_the_guard_against_the_base_model(tmp_path, monkeypatch):
  """The held-out evaluation the finetune stage runs: step 0 measures the base model, a
  later step whose judge answers by slot is flagged and logged in one line."""
  calls = []

  class FakeReward:
    """The base model reads content (right in both orders); after training the judge says
    A in both orders, a hair more or less sure by pair (so half the pairs score right)."""

    def __init__(self, *args, **kwargs):
      self.scorer = self

    def order_probs(self, triples):
      calls.append(len(triples))
      n = len(triples)
      if len(calls) == 1:
        first = np.tile([0.7, 0.3], (n, 1))
        return first, first[:, ::-1], np.zeros(n, bool)
      eps = np.where(np.arange(n) % 2 == 0, 0.01, -0.01)
      first = np.tile([0.9, 0.1], (n, 1))
      second = np.stack([0.9 - eps, 0.1 + eps], 1)
      return first, second, np.zeros(n, bool)

  monkeypatch.setattr(recipes, "RewardModel", FakeReward)
  monkeypatch.setattr(recipes.nnx, "merge", lambda graphdef, params: None)
  warnings = []
  monkeypatch.setattr(recipes.logging, "warning", lambda fmt, *a: warnings.append(fmt % a))
  c = configlib.base_config("finetune")
  c.eval.every_steps = 5
  pairs = [preference.PreferencePair(f"q{i}", "good", "bad") for i in range(200)]
  evaluation = recipes.heldout_accuracy(c, None, pairs, None, str(tmp_path))
  assert evaluation.at_start and evaluation.every == 5
  base = evaluation.run(None, {}, 0)
  assert (base["position_consistency"], base["accuracy"]) == (1.0, 1.0)
  assert "answers_by_slot" not in base and not warnings
  after = evaluation.run(None, {}, 10)
  assert (after["position_consistency"], after["accuracy"]) == (0.0, 0.5)
  assert after["p_first_slot"] == pytest.approx(0.9)
  assert after["answers_by_slot"] == 1.0
  assert len(warnings) == 1 and "step 10: the judge answers by slot" in warnings[0]
  assert "(base model 100.0 %)" in warnings[0]


def test_the_self_training_report_names_stages_that_answer_by_slot():
  from gram_jax.stages import self_train_report
  rows = [{"stage": "baseline", "heldout_accuracy": 0.5, "heldout_probability_accuracy": 0.5,
           "heldout_consistency": 0.02},
          {"stage": "round 1", "heldout_accuracy": 0.8, "heldout_probability_accuracy": 0.8,
           "heldout_consistency": 0.7}]
  lines = self_train_report.slot_warnings(rows, heldout_pairs=200)
  assert len(lines) == 1 and lines[0].startswith("- **baseline**: the judge answers by slot")
  assert "WARNING: the judge answers by slot" in self_train_report.row_line(rows[0], 200)
  assert "WARNING" not in self_train_report.row_line(rows[1], 200)
