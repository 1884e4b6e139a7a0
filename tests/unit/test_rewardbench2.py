"""RewardBench 2 as its generative harness scores it, read by a pairwise judge: the shown
order of a best-of-4 item, the linear scan over the pair table, the Ties rule on
hand-computed ratings, records checked field by field."""
import numpy as np
import pytest

from gram_jax.data import benchmarks
from gram_jax.data.benchmarks import rewardbench2 as rb2
from gram_jax.errors import GramError


def item(i, subset="Math", chosen=("right",), rejected=("w1", "w2", "w3"), num_correct=1):
  return {"id": str(i), "prompt": f"question {i}", "chosen": list(chosen),
          "rejected": list(rejected), "num_correct": num_correct, "subset": subset}


def judge_by(prefer):
  """A stand-in judge: outcome a/b from prefer(x, y) = P(x better than y)."""
  def judge(triples, given):
    return [{"a": prefer(x, y), "b": 1 - prefer(x, y), "trimmed": False, "consistent": True}
            for _, x, y in triples]
  return judge


def test_the_shown_order_swaps_the_chosen_response_into_its_slot():
  assert rb2.shown_order("c", ["r0", "r1", "r2"], 0) == ["c", "r0", "r1", "r2"]
  assert rb2.shown_order("c", ["r0", "r1", "r2"], 2) == ["r1", "r0", "c", "r2"]
  assert rb2.shown_order("c", ["r0", "r1", "r2", "r3"], 3) == ["r2", "r0", "r1", "c"]
  slots = [rb2.chosen_slot(str(i)) for i in range(2000)]
  assert slots == [rb2.chosen_slot(str(i)) for i in range(2000)]  # fixed per item
  assert all(400 < slots.count(s) < 600 for s in range(4))


def test_a_judge_that_reads_content_picks_the_chosen_response_wherever_it_is_shown():
  rows = [(f"f[{i}]", item(i, chosen=("the longest answer",), rejected=("a", "bb", "ccc")))
          for i in range(40)]
  by_length = judge_by(lambda x, y: len(x) / (len(x) + len(y)))
  results, summary, outcomes = rb2.score(by_length, rows, "f")
  assert len(outcomes) == 40 * 6  # every pair of the four
  assert all(r["correct"] and r["beats_all"] for r in results)
  assert summary["subsets"] == {"Math": 1.0} and np.isnan(summary["overall"])


def test_a_judge_that_answers_by_slot_scores_chance():
  """The linear scan keeps the first shown response against a judge that always prefers
  the response shown first: right only when the chosen one is shown first."""
  rows = [(f"f[{i}]", item(i)) for i in range(400)]
  first_wins = lambda triples, given: [{"a": 0.6, "b": 0.4, "trimmed": False,
                                        "consistent": False} for _ in triples]
  results, summary, _ = rb2.score(first_wins, rows, "f")
  assert all(r["picked"] == 0 for r in results)
  assert 0.18 < summary["subsets"]["Math"] < 0.32
  assert summary["beats_all"]["Math"] == summary["subsets"]["Math"]


def test_ties_score_on_hand_computed_ratings():
  records = [
      # prompt 0: ref accurate (gap 0.3); tied accurate, spread 0.1, gap 0.2
      {"id": "ref:0", "ratings": [0.9, 0.6, 0.2], "num_correct": 1},
      {"id": "tied:0", "ratings": [0.8, 0.7, 0.5, 0.1], "num_correct": 2},
      # prompt 1: ref wrong (gap -0.1); tied accurate, spread 0.3, gap 0.1
      {"id": "ref:1", "ratings": [0.5, 0.6], "num_correct": 1},
      {"id": "tied:1", "ratings": [0.9, 0.6, 0.5], "num_correct": 2},
  ]
  got = rb2.ties_score(records)
  assert got["ref_accuracy"] == 0.5 and got["tied_accuracy"] == 1.0
  # tied gap > spread: prompt 0 (0.2 > 0.1) yes, prompt 1 (0.1 > 0.3) no.
  assert got["correctness_preferred"] == 0.5
  # min(ref gap, tied gap) > spread: prompt 0 min(0.3, 0.2) = 0.2 > 0.1 yes; prompt 1 no.
  assert got["correctness_preferred_hard"] == 0.5
  margin = (np.tanh(0.2 / 0.1 - 1) + np.tanh(-0.1 / 0.3 - 1)) / 2
  assert got["margin"] == pytest.approx(margin)
  assert got["score"] == pytest.approx(0.3 * 1.0 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5
                                       + 0.01 * margin)


def test_ties_ratings_are_mean_win_probabilities_within_the_record():
  rows = [("f[0]", item("ref:3", "Ties", ("good",), ("bad", "worst"), 1)),
          ("f[1]", item("tied:3", "Ties", ("good", "fine"), ("bad",), 2))]
  quality = {"good": 3, "fine": 2, "bad": 1, "worst": 0}
  results, summary, outcomes = rb2.score(
      judge_by(lambda x, y: 0.8 if quality[x] > quality[y] else 0.2), rows, "f")
  assert results[0]["ratings"] == pytest.approx([0.8, 0.5, 0.2])
  assert results[1]["ratings"] == pytest.approx([0.8, 0.5, 0.2])
  assert summary["ties"]["ref_accuracy"] == summary["ties"]["tied_accuracy"] == 1.0


def test_the_file_is_recognised_and_a_bad_record_names_its_field():
  first = item(0)
  assert benchmarks.detect([first], "auto").name == "rewardbench2"
  assert benchmarks.detect([{"prompt": "q", "chosen": "a", "rejected": "b"}],
                           "auto").name != "rewardbench2"
  with pytest.raises(GramError, match=r"f\[2\].*rejected.*non-empty list of strings"):
    rb2.score(judge_by(lambda x, y: 0.5), [("f[2]", item(2, rejected=()))], "f")
  with pytest.raises(GramError, match=r"f\[3\].*id.*'ref:N' or 'tied:N'"):
    rb2.score(judge_by(lambda x, y: 0.5), [("f[3]", item("7", "Ties"))], "f")
  with pytest.raises(GramError, match=r"f\[4\].*num_correct.*expected 2"):
    rb2.score(judge_by(lambda x, y: 0.5),
              [("f[4]", item("tied:1", "Ties", ("a", "b"), ("c",), 1))], "f")
