"""The official group arithmetic of RewardBench, JudgeBench and RM-Bench on known outcomes."""
import numpy as np
import pytest

from gram_jax import benchmarks


def test_rewardbench_groups_pool_subsets_and_average_groups():
  outcomes = ([("alpacaeval-easy", True)] * 3 + [("mt-bench-med", False)] +        # chat 3/4
              [("llmbar-natural", True), ("mt-bench-hard", False)] +               # hard 1/2
              [("donotanswer", True)] * 5 +                                        # safety 5/5
              [("math-prm", False)] * 3 + [("hep-rust", True)] +                   # reason 1/4
              [("not-a-subset", True)])
  summary = benchmarks.rewardbench_summary(outcomes)
  assert summary["groups"] == {"chat": 0.75, "chat-hard": 0.5, "safety": 1.0,
                               "reasoning": 0.25}
  assert summary["overall"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.25) / 4)
  assert summary["subsets"]["alpacaeval-easy"] == 1.0
  assert summary["ungrouped_subsets"] == {"not-a-subset": 1}


def test_judgebench_groups_by_source_substring():
  outcomes = [("mmlu-pro-law", True), ("mmlu-pro-math", False), ("livebench-reasoning", True),
              ("livebench-math", True), ("livebench-math", False), ("livecodebench", True)]
  summary = benchmarks.judgebench_summary(outcomes)
  assert summary["groups"] == {"Knowledge": 0.5, "Reasoning": 1.0, "Math": 0.5, "Coding": 1.0}
  assert summary["overall"] == pytest.approx(4 / 6)


def test_rmbench_triangles():
  # chosen i beats rejected j: hard = upper triangle, normal = diagonal, easy = lower.
  matrix = np.array([[1, 0, 0],
                     [1, 1, 0],
                     [1, 1, 0]], bool)
  item = benchmarks.rmbench_item_accuracy(matrix)
  assert item == {"hard": 0.0, "normal": pytest.approx(2 / 3), "easy": 1.0,
                  "avg": pytest.approx(5 / 9)}
  summary = benchmarks.rmbench_summary([("chat", matrix), ("chat", np.ones((3, 3), bool)),
                                        ("math", np.zeros((3, 3), bool))])
  assert summary["domains"]["chat"]["hard"] == 0.5
  assert summary["domains"]["chat"]["avg"] == pytest.approx((5 / 9 + 1) / 2)
  assert summary["overall"]["avg"] == pytest.approx(((5 / 9 + 1) / 2 + 0) / 2)
  assert summary["overall"]["easy"] == pytest.approx(2 / 3)


def test_markdown_renders_every_kind():
  rb = benchmarks.rewardbench_summary([("alpacaeval-easy", True)])
  assert "| chat | overall |" in benchmarks.markdown("rb.json", rb, 2)
  rm = benchmarks.rmbench_summary([("chat", np.ones((3, 3), bool))])
  assert "| chat | 1 | 100.0 | 100.0 | 100.0 | 100.0 |" in benchmarks.markdown("rm", rm, 0)
