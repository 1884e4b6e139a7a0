"""GRAM-R² self-training rules on hand-computed cases: proof selection (paper Eq. 5), the
rule checks on a judgment, and the pseudo-label keep/drop decision."""
import pytest

from gram_jax import pseudo_labels as rules
from gram_jax.inference import proving
from gram_jax.stages import self_train_report
from gram_jax.data.preference import PreferencePair
from gram_jax.errors import GramError
from gram_jax.inference.voting import Vote
from gram_jax.pseudo_labels import SampledJudgment

GOOD = ("<think>\nFeedback:\nA says 4, B says 5.\n\nComparision:\n2 + 2 is 4.\n\n"
        "Conclusion:\nResponse A is better.\n</think>\n<answer>\nA\n</answer>")


def test_proof_score_is_conditional_over_unconditional_log_likelihood():
  # Score = -log p(z | s, l) / log p(z): -(-10) / -50 = -0.2; -(-40) / -50 = -0.8.
  assert proving.proof_score(-10.0, -50.0) == pytest.approx(-0.2)
  assert proving.proof_score(-40.0, -50.0) == pytest.approx(-0.8)
  assert proving.proof_score(0.0, -3.0) == 0.0  # a certain proof scores the maximum


def test_select_proof_prefers_likely_given_the_pair_and_unlikely_alone():
  # scores: -(-10)/-50 = -0.2, -(-5)/-10 = -0.5, -(-20)/-100 = -0.2: the first best wins.
  assert proving.select_proof([-10.0, -5.0, -20.0], [-50.0, -10.0, -100.0]) == 0
  # A generic proof (likely alone, -6) loses to a specific one (unlikely alone, -60).
  assert proving.select_proof([-8.0, -9.0], [-6.0, -60.0]) == 1


def test_a_well_formed_judgment_passes():
  assert rules.judgment_problem(GOOD) is None


@pytest.mark.parametrize("text,label,named", [
    ("Response A is more accurate.", "A", True),
    ("Assistant B gives the date.", "B", True),
    ("Option (A) answers the question.", "A", True),
    ("B is correct and concise.", "B", True),
    ("B's answer is correct.", "B", True),
    ("A good answer names the date.", "A", False),  # the article, not the label
    ("A response should be short.", "A", False),
    ("response a is better", "A", False),  # the letter's case must match
    ("Response AB is better.", "A", False),
    ("Response B is better.", "A", False),
])
def test_names_label_finds_references_to_a_response_only(text, label, named):
  assert rules.names_label(text, label) is named


@pytest.mark.parametrize("reply,problem", [
    ("<think>\nA is fine.\n</think>\n<answer>\nC\n</answer>", "no_verdict"),
    ("Response A is better.", "no_verdict"),
    ("<think>\nok\n<answer>\nA\n</answer>", "broken_format"),  # <think> never closed
    (GOOD + "\nAnd more text.", "broken_format"),
    ("<think>\n\n</think>\n<answer>\nA\n</answer>", "missing_rationale"),
    ("<think>\n" + "x" * 101 + "\n</think>\n<answer>\nA\n</answer>", "too_long"),
    ("<think>\nConclusion:\nResponse B is better.\n</think>\n<answer>\nA\n</answer>",
     "contradiction"),
    # A rationale that never names the response it picks does not vote (docs/method.md §6, step 4).
    ("<think>\nBoth are polite; the second is more precise.\n</think>\n<answer>\nA\n"
     "</answer>", "omits_label"),
    ("<think>\nA clear answer wins here.\n</think>\n<answer>\nA\n</answer>", "omits_label"),
])
def test_each_rule(reply, problem):
  assert rules.judgment_problem(reply, max_rationale_chars=100) == problem


def test_preferred_line_format_rules():
  assert rules.judgment_problem("A is right.\n#Preferred: A", fmt="preferred_line") is None
  assert rules.judgment_problem("#Preferred: A", fmt="preferred_line") == "missing_rationale"
  assert rules.judgment_problem("x\n#Preferred: A\n#Preferred: B",
                                fmt="preferred_line") == "broken_format"


@pytest.mark.parametrize("text,stated", [
    ("Response B is better.", "B"),
    ("Assistant A is the better one.", "A"),
    ("B is clearly superior to A.", "B"),
    ("At first Response A is better, but on reflection Response B is better.", "B"),
    ("Response A is not better than B.", None),  # a negation is not a claim
    ("a is better", None),  # the label's own case
    ("Response A is correct and Response B is wrong.", None),
])
def test_stated_preference(text, stated):
  assert rules.stated_preference(text) == stated


def _j(pick, problem=None, p=0.9):
  probs = (p, 1 - p) if pick == 0 else (1 - p, p)
  return SampledJudgment(pick, problem, probs)


def test_pseudo_label_is_the_majority_of_the_judgments_that_pass_the_rules():
  judgments = [_j(0), _j(0), _j(1, "contradiction"), _j(0, p=0.6), _j(1, p=0.8), _j(None,
                                                                                   "no_verdict")]
  label = rules.pseudo_label(judgments, min_vote_share=0.6, min_confidence=0.7)
  # Valid: A, A, A (p 0.6), B: 3 of 4 votes for A; confidence = mean P(A) over the valid
  # four = (0.9 + 0.9 + 0.6 + 0.2) / 4 = 0.65 < 0.7.
  assert label.vote == Vote(for_a=3, for_b=1, abstained=2) and label.pick == 0
  assert label.confidence == pytest.approx(0.65)
  assert label.drop_reason == "low_confidence"
  assert rules.pseudo_label(judgments, 0.6, 0.6).drop_reason is None


@pytest.mark.parametrize("judgments,reason", [
    ([_j(0, "broken_format"), _j(None, "no_verdict")], "no_valid_judgment"),
    ([_j(0), _j(1), _j(0), _j(1)], "tie"),
    ([_j(0), _j(0), _j(0), _j(1), _j(1)], "split_vote"),  # 3/5 = 0.6 < 0.7
])
def test_drop_reasons(judgments, reason):
  assert rules.pseudo_label(judgments, min_vote_share=0.7).drop_reason == reason


def test_keep_most_confident_fraction_of_all_pairs():
  confidences = [0.9, None, 0.7, 0.95, 0.7]
  assert rules.keep_most_confident(confidences, 0.4) == [True, False, False, True, False]
  assert rules.keep_most_confident(confidences, 0.6) == [True, False, True, True, False]


def test_the_export_is_the_best_validation_model_else_the_last():
  assert rules.choose_export([None, None, None]) == 2  # export=final: the paper's last stage
  assert rules.choose_export([0.70, 0.85, 0.78]) == 1
  assert rules.choose_export([0.80, 0.80, 0.60]) == 1  # a tie goes to the later model


def _pairs(*texts):
  return [PreferencePair(prompt=t, chosen="yes", rejected="no", where=f"f:{i}")
          for i, t in enumerate(texts)]


def test_validation_pairs_must_not_be_test_pairs():
  rules.check_validation_set(_pairs("a?", "b?"), _pairs("c?"))
  with pytest.raises(GramError, match=r"validation_files: 1 of 2 validation pairs are "
                                      r"held-out test pairs"):
    rules.check_validation_set(_pairs("a?", "c?"), _pairs("c?"))
  with pytest.raises(GramError, match="validation_files: no validation pairs"):
    rules.check_validation_set([], _pairs("c?"))


def test_a_stage_is_logged_in_words_as_soon_as_it_is_measured():
  row = {"stage": "round 1", "judged": 300, "kept": 231, "kept_agree_gold": 0.95,
         "heldout_accuracy": 0.89, "heldout_probability_accuracy": 0.94,
         "heldout_consistency": 0.915}
  assert self_train_report.row_line(row) == (
      "round 1: kept 231 of 300 judged pairs; 95.0 % of the kept agree with gold; held-out "
      "verdict accuracy 89.0 %, P(A)/P(B) 94.0 %, position consistency 91.5 %")
  assert self_train_report.row_line({"stage": "warm start"}) == "warm start: done (no held-out pairs)"


def test_the_report_marks_the_exported_row_and_shows_validation_when_measured():
  rows = [{"stage": "warm start", "heldout_accuracy": 0.5, "validation_accuracy": 0.6},
          {"stage": "round 1", "heldout_accuracy": 0.7, "validation_accuracy": 0.8}]
  lines = self_train_report.report_table(rows, exported=1).splitlines()
  assert lines[0].endswith("| validation verdict acc. |") and lines[1].count("---") == 11
  assert lines[2].startswith("| warm start |") and lines[2].endswith("| 60.0 |")
  assert lines[3].startswith("| round 1 **(exported)** |") and lines[3].endswith("| 80.0 |")
  assert "validation" not in self_train_report.report_table([{"stage": "warm start"}], exported=0)
