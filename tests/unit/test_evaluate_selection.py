"""The evaluate stage's first-try controls and what it tells the user: `eval.max_pairs`
(first records or a seeded sample, said in the report, never reused for a full run),
progress named by benchmark as pairs finish, and LLMBar sets known by their content."""
import json
import os
import shutil
from types import SimpleNamespace

from gram_jax.data import benchmarks
from gram_jax.stages import evaluate
from tests.conftest import shared_data

PAIRS = [{"prompt": f"Question {i}?", "chosen": "a longer answer " * (i % 3 + 1),
          "rejected": "short"} for i in range(10)]


class LengthJudge:
  """Prefers the longer response: enough of a RewardModel for evaluate_file."""
  reasoning, batch_size, max_len = None, 2, 64

  def describe(self) -> str:
    return "longer is better"

  def judge_batch(self, triples, first_index=0):
    return [SimpleNamespace(a=float(len(a)), b=float(len(b)), trimmed=False, consistent=True,
                            judgments=())
            for _, a, b in triples]

  def scores_of(self, judged):
    return [(j.a, j.b) for j in judged]


def _evaluate(tmp_path, path, out, **selection):
  return evaluate.evaluate_file(LengthJudge(), str(path), "auto", str(tmp_path / out), {},
                                **selection)


def _results(tmp_path, out):
  return [json.loads(line) for line in open(tmp_path / out / "results.jsonl")]


def test_max_pairs_scores_the_first_records_and_the_report_says_so(tmp_path):
  path = tmp_path / "pairs.json"
  path.write_text(json.dumps(PAIRS))
  summary = _evaluate(tmp_path, path, "out", max_records=4)
  assert summary["pairs"] == 4
  assert [r["prompt"] for r in _results(tmp_path, "out")] == [p["prompt"] for p in PAIRS[:4]]
  heading = open(tmp_path / "out" / "report.md").readline()
  assert heading == (f"### {path}: labeled pairs (plain accuracy), 4 pairs; the first 4 of "
                     "the file's 10 records\n")
  # The same folder asked for every record scores them all: a partial result is not reused.
  full = _evaluate(tmp_path, path, "out")
  assert full["pairs"] == 10 and "sample" not in full


def test_a_random_sample_is_seeded_and_keeps_file_order(tmp_path):
  path = tmp_path / "pairs.json"
  path.write_text(json.dumps(PAIRS))
  picked = {}
  for seed, out in ((1, "a"), (1, "b"), (2, "c")):
    summary = _evaluate(tmp_path, path, out, max_records=5, sample="random", seed=seed)
    assert summary["sample"] == {"records": 5, "of": 10,
                                 "how": f"a random sample (seed {seed}) of"}
    indices = [int(r["prompt"].split()[1][:-1]) for r in _results(tmp_path, out)]
    assert len(set(indices)) == 5 and indices == sorted(indices)
    picked[out] = indices
  assert picked["a"] == picked["b"]


def test_progress_names_the_benchmark_and_counts_pairs_as_they_finish(tmp_path, capsys):
  path = tmp_path / "pairs.json"
  path.write_text(json.dumps(PAIRS))
  _evaluate(tmp_path, path, "out")
  lines = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith(f"labeled pairs (plain accuracy) {path}: pair ")]
  assert lines[0].startswith(f"labeled pairs (plain accuracy) {path}: pair 2/10 (20.0%)")
  assert "ETA" in lines[0] and lines[-1].startswith(
      f"labeled pairs (plain accuracy) {path}: pair 10/10 (100.0%)")


def test_an_llmbar_set_is_known_by_its_content_wherever_it_lies(tmp_path):
  source = shared_data("llmbar", "LLMBar", "Adversarial", "GPTOut", "dataset.json")
  renamed = tmp_path / "my_copy.json"
  shutil.copy(source, renamed)
  summary = _evaluate(tmp_path, renamed, "out", max_records=3)
  assert summary["benchmark"] == "rewardbench"
  assert list(summary["subsets"]) == ["llmbar-adver-GPTOut"]
  assert "chat-hard" in summary["groups"]
  heading = open(tmp_path / "out" / "report.md").readline()
  assert heading.startswith(f"### {renamed}: RewardBench (llmbar-adver-GPTOut), 3 pairs; ")


def test_an_llmbar_format_file_of_other_content_is_plain_pairs(tmp_path):
  rows = [{"input": "Say hi.", "output_1": "Hi!", "output_2": "No.", "label": 1}]
  assert benchmarks.rewardbench.llmbar_subset(str(tmp_path / "x.json"), rows[0]) is None
  assert benchmarks.detect(rows, "auto", os.path.join(str(tmp_path), "x.json")).name == "pairs"
