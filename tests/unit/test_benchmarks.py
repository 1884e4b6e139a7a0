"""The official group arithmetic of RewardBench, JudgeBench and RM-Bench on known outcomes."""
import numpy as np
import pytest

from gram_jax.data import benchmarks


def test_rewardbench_groups_pool_subsets_and_average_groups():
  outcomes = ([("alpacaeval-easy", True)] * 3 + [("mt-bench-med", False)] +        # chat 3/4
              [("llmbar-natural", True), ("mt-bench-hard", False)] +               # hard 1/2
              [("donotanswer", True)] * 5 +                                        # safety 5/5
              [("math-prm", False)] * 3 + [("hep-rust", True)] +                   # reason 1/4
              [("not-a-subset", True)])
  summary = benchmarks.rewardbench.summary(outcomes)
  assert summary["groups"] == {"chat": 0.75, "chat-hard": 0.5, "safety": 1.0,
                               "reasoning": 0.25}
  assert summary["overall"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.25) / 4)
  assert summary["subsets"]["alpacaeval-easy"] == 1.0
  assert summary["ungrouped_subsets"] == {"not-a-subset": 1}


def test_judgebench_micro_over_pairs_and_macro_over_groups():
  outcomes = ([("mmlu-pro-law", True)] * 3 + [("mmlu-pro-math", False)] +       # 3/4
              [("livebench-reasoning", True), ("livebench-reasoning", False)] +   # 1/2
              [("livebench-math", False)] +                                      # 0/1
              [("livecodebench", True)] * 2 +                                    # 2/2
              [("something-else", True)])
  summary = benchmarks.judgebench.summary(outcomes)
  assert summary["groups"] == {"Knowledge": 0.75, "Reasoning": 0.5, "Math": 0.0, "Coding": 1.0}
  assert summary["micro"] == pytest.approx(7 / 10)  # every pair, the official scorer
  assert summary["macro"] == pytest.approx((0.75 + 0.5 + 0.0 + 1.0) / 4)  # the papers' tables
  assert summary["other_source_pairs"] == 1


def test_rmbench_triangles():
  # chosen i beats rejected j: hard = upper triangle, normal = diagonal, easy = lower.
  matrix = np.array([[1, 0, 0],
                     [1, 1, 0],
                     [1, 1, 0]], bool)
  item = benchmarks.rmbench.item_accuracy(matrix)
  assert item == {"hard": 0.0, "normal": pytest.approx(2 / 3), "easy": 1.0,
                  "avg": pytest.approx(5 / 9)}
  summary = benchmarks.rmbench.summary([("chat", matrix), ("chat", np.ones((3, 3), bool)),
                                        ("math", np.zeros((3, 3), bool))])
  assert summary["domains"]["chat"]["hard"] == 0.5
  assert summary["domains"]["chat"]["avg"] == pytest.approx((5 / 9 + 1) / 2)
  assert summary["overall"]["avg"] == pytest.approx(((5 / 9 + 1) / 2 + 0) / 2)
  assert summary["overall"]["easy"] == pytest.approx((1.0 + 0.0) / 2)  # mean of the domains


def test_rmbench_merges_the_two_safety_subsets_into_one_domain():
  ones, zeros = np.ones((3, 3), bool), np.zeros((3, 3), bool)
  summary = benchmarks.rmbench.summary([
      ("safety-refuse", ones), ("safety-refuse", ones), ("safety-response", zeros),
      ("chat", zeros), ("math", ones), ("code", ones)])
  assert list(summary["domains"]) == ["chat", "math", "code", "safety"]
  assert summary["domains"]["safety"]["items"] == 3
  assert summary["domains"]["safety"]["avg"] == pytest.approx(2 / 3)  # pooled items
  # Overall: the mean of chat 0, math 1, code 1, safety 2/3 (not of five subsets).
  assert summary["overall"]["avg"] == pytest.approx((0 + 1 + 1 + 2 / 3) / 4)


def test_readout_summary_counts_consistency_and_reasoning_readouts():
  row = dict(votes=6, orders=2)
  rows = [dict(row, consistent=True, verdict_correct=True, voting_correct=True,
               probability_correct=False, judgments=6, no_verdict=1, tied=False),
          dict(row, consistent=False, verdict_correct=False, voting_correct=True,
               probability_correct=True, judgments=6, no_verdict=0, tied=False),
          dict(row, consistent=False, verdict_correct=False, voting_correct=False,
               probability_correct=False, judgments=6, no_verdict=3, tied=True)]
  summary = benchmarks.readout_summary(rows)
  assert summary == {"position_consistency": pytest.approx(1 / 3), "votes": 6, "orders": 2,
                     "verdict_accuracy": pytest.approx(1 / 3),
                     "voting_accuracy": pytest.approx(2 / 3),
                     "probability_accuracy": pytest.approx(1 / 3), "judgments": 18,
                     "no_verdict_judgments": 4, "tied_pairs": 1}
  assert benchmarks.readout_summary([{"consistent": True}]) == {"position_consistency": 1.0}
  one_order = benchmarks.readout_summary([{"consistent": None}])  # judged in one order
  assert one_order["position_consistency"] != one_order["position_consistency"]  # NaN


def test_rewardbench_reports_gram_pooling_and_the_leaderboard_weighting():
  # reasoning: math-prm 1 of 2 right; hep-python 2 of 2, hep-go 0 of 2.
  flags = [("math-prm", True), ("math-prm", False), ("hep-python", True), ("hep-python", True),
           ("hep-go", False), ("hep-go", False), ("alpacaeval-easy", True)]
  summary = benchmarks.rewardbench.summary(flags)
  assert summary["groups"]["reasoning"] == pytest.approx(3 / 6)  # pooled: 3 right of 6
  # Leaderboard: subset accuracies weighted 984 (math-prm), 164, 164 (hep-*).
  expected = (0.5 * 984 + 1.0 * 164 + 0.0 * 164) / (984 + 164 + 164)
  assert summary["leaderboard"]["groups"]["reasoning"] == pytest.approx(expected)
  assert summary["leaderboard"]["overall"] == pytest.approx((1.0 + expected) / 2)
  text = benchmarks.markdown("rb.json", {**summary, "trimmed_pairs": 0})
  assert "| GRAM (pooled within a group) | 100.0 | n/a | n/a | 50.0 | 75.0 |" in text
  assert f"| leaderboard (subsets weighted, math-prm up-weighted) | 100.0 | n/a | n/a | " \
         f"{100 * expected:.1f} |" in text


def test_markdown_renders_every_kind():
  rb = benchmarks.rewardbench.summary([("alpacaeval-easy", True)])
  text = benchmarks.markdown("rb.json", {**rb, "trimmed_pairs": 2, "max_len": 512})
  assert text.startswith("### rb.json: RewardBench (alpacaeval-easy), 1 pair\n")
  assert "| chat | chat-hard | safety | reasoning | overall (mean of groups) |" in text
  assert "Pairs trimmed to fit the prompt budget of 512 tokens: 2." in text
  rm = benchmarks.rmbench.summary([("chat", np.ones((3, 3), bool))])
  assert "| chat | 1 | 100.0 | 100.0 | 100.0 | 100.0 |" in benchmarks.markdown(
      "rm", {**rm, "trimmed_pairs": 0})
  jb = benchmarks.judgebench.summary([("livecodebench", True), ("mmlu-pro", False)])
  jb["position_consistency"] = 0.5
  text = benchmarks.markdown("jb", {**jb, "trimmed_pairs": 0})
  assert "| Knowledge | Coding | micro (official scorer) | macro (mean of groups) |" in text
  assert "| 0.0 | 100.0 | 50.0 | 50.0 |" in text and "Position consistency" in text


def test_llmbar_folders_map_to_rewardbench_chat_hard_subsets():
  assert benchmarks.rewardbench.llmbar_subset("/d/llmbar/LLMBar/Natural/dataset.json") == "llmbar-natural"
  assert benchmarks.rewardbench.llmbar_subset("LLMBar/Adversarial/GPTOut/dataset.json") == \
      "llmbar-adver-GPTOut"
  assert benchmarks.rewardbench.llmbar_subset("/d/llmbar/Processed/MT-Bench/dataset.json") is None
  assert benchmarks.rewardbench.llmbar_subset("/d/Natural/dataset.json") is None
  for subset in benchmarks.rewardbench.LLMBAR_SUBSETS.values():
    assert benchmarks.rewardbench.SUBSETS[subset] == "chat-hard"
