"""A benchmark is one module and one registry line: a made-up one, registered in a test, is
recognised, judged in its own order, grouped, summarised and reported by the evaluate stage,
which knows nothing of it."""
import collections
import json

from gram_jax.data import benchmarks
from gram_jax.data.benchmarks import base
from gram_jax.stages import evaluate
from tests.unit.test_evaluate_selection import LengthJudge

# The made-up benchmark: {riddle, good, bad, topic}; a record is judged twice, once with
# each response shown first (its own protocol), and is right only when both judgments are.


def _score(judge, rows, path):
  triples = [(r["riddle"], r["good"], r["bad"]) for _, r in rows]
  outcomes = judge(triples + triples, [True] * len(rows) + [False] * len(rows))
  n = len(rows)
  results, by_topic = [], collections.defaultdict(list)
  for (_, row), first, second in zip(rows, outcomes[:n], outcomes[n:]):
    ok = base.correct(first) and base.correct(second)
    by_topic[row["topic"]].append(ok)
    results.append({**row, "correct": ok})
  groups = {t: base.accuracy(f) for t, f in sorted(by_topic.items())}
  summary = {"benchmark": "riddles", "items": n, "groups": groups,
             "overall": base.accuracy([r["correct"] for r in results])}
  return results, summary, outcomes


RIDDLES = base.Benchmark(
    "riddles", "Riddles (made up)", lambda first, path: "riddle" in first, _score,
    lambda s: base.totals_table(s, [("overall", "all riddles")]))


def test_a_registered_benchmark_is_evaluated_by_its_own_rules(tmp_path, monkeypatch):
  monkeypatch.setattr(benchmarks, "REGISTRY", [RIDDLES] + benchmarks.REGISTRY)
  rows = [{"riddle": f"Riddle {i}?", "good": "a long answer" * (1 + i % 2),
           "bad": "short" if i % 3 else "a much longer wrong answer" * 3,
           "topic": "cats" if i < 4 else "dogs"} for i in range(7)]
  path = tmp_path / "riddles.json"
  path.write_text(json.dumps(rows))
  summary = evaluate.evaluate_file(LengthJudge(), str(path), "auto", str(tmp_path / "out"), {})
  # Expected from the records, not from the benchmark's code: the longer response wins.
  right = [len(r["good"]) > len(r["bad"]) for r in rows]
  assert summary["benchmark"] == "riddles" and summary["items"] == 7
  assert summary["groups"] == {"cats": sum(right[:4]) / 4, "dogs": sum(right[4:]) / 3}
  assert summary["overall"] == sum(right) / 7
  assert summary["trimmed_pairs"] == 0 and summary["position_consistency"] == 1.0
  report = (tmp_path / "out" / "report.md").read_text()
  assert report.startswith(f"### {path}: Riddles (made up), 7 items\n")
  assert "| cats | dogs | all riddles |" in report
  assert benchmarks.detect(rows, "riddles").name == "riddles"


def test_detection_order_and_the_parser_share_format_names():
  """Every benchmark but plain pairs and RewardBench's field sniffing is known by the
  preference parser's name for its records' format."""
  assert benchmarks.REGISTRY[-1].name == "pairs"
  samples = {"rmb_bon": {"conversation_input": [], "bon_best": {}},
             "rmb": {"conversation_input": [], "chosen": {}, "reject": {}},
             "pandalm": {"instruction": "i", "annotator1": 1},
             "hhh": {"chosen_instruction": "x", "rejected_instruction": "y"},
             "rmbench": {"prompt": "p", "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]},
             "judgebench": {"question": "q", "response_A": "a", "response_B": "b",
                            "label": "A>B", "source": "mmlu-pro"},
             "rewardbench": {"prompt": "p", "chosen": "a", "rejected": "b",
                             "subset": "alpacaeval-easy"},
             "pairs": {"prompt": "p", "chosen": "a", "rejected": "b"}}
  for name, row in samples.items():
    assert benchmarks.detect([row], "auto").name == name, name
