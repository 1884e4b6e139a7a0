"""Stages finetune and evaluate end to end on the built-in task, through the CLI."""
import json
import os

import numpy as np
import pytest

from gram_jax import benchmarks, synthetic
from gram_jax.metrics import read_jsonl_metrics
from tests import cli
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("finetune"))
  result = cli.run_main("configs/finetune.py", f"--config.workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_finetune_raises_heldout_accuracy_well_above_chance(finetuned):
  evals = read_jsonl_metrics(os.path.join(finetuned, "eval_metrics.jsonl"))
  accuracy = [evals[s]["accuracy"] for s in sorted(evals)]
  print("held-out accuracy by eval:", accuracy)
  assert accuracy[-1] >= 0.8 and accuracy[-1] > accuracy[0]


def _benchmark_files(tmp_path):
  pairs = synthetic.make_pairs(40, seed=77, tasks=("category",))
  subsets = ["alpacaeval-easy", "mt-bench-hard", "donotanswer", "math-prm"]
  rewardbench = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
                  "subset": subsets[i % 4], "id": i} for i, p in enumerate(pairs)]
  sources = ["mmlu-pro-law", "livebench-reasoning", "livebench-math", "livecodebench"]
  judgebench = [{"question": p["prompt"], "response_A": p["chosen"], "response_B": p["rejected"],
                 "label": "A>B", "source": sources[i % 4], "pair_id": i}
                for i, p in enumerate(pairs)]
  rmbench = [{"id": i, "prompt": p["prompt"], "chosen": [p["chosen"]] * 3,
              "rejected": [p["rejected"], p["rejected"] + " Indeed.", "**" + p["rejected"] + "**"]}
             for i, p in enumerate(pairs[:12])]
  files = {"rewardbench.json": rewardbench, "judgebench.jsonl": judgebench,
           "rmbench_chat.json": rmbench}
  paths = []
  for name, rows in files.items():
    path = tmp_path / name
    if name.endswith(".jsonl"):
      path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
      path.write_text(json.dumps(rows))
    paths.append(str(path))
  return paths


def test_evaluate_writes_results_and_official_summaries(finetuned, tmp_path):
  files = _benchmark_files(tmp_path)
  out = str(tmp_path / "eval")
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={finetuned}",
                        f"--config.eval.files={','.join(files)}", f"--config.workdir={out}",
                        "--config.template.judge=compact", "--config.eval.max_len=64")
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(os.path.join(out, "report.md"))
  for stem, kind in (("rewardbench", "rewardbench"), ("judgebench", "judgebench"),
                     ("rmbench_chat", "rmbench")):
    summary = json.load(open(os.path.join(out, stem, "summary.json")))
    rows = [json.loads(l) for l in open(os.path.join(out, stem, "results.jsonl"))]
    assert summary["benchmark"] == kind
    if kind == "rewardbench":
      assert rows[0]["subset"] == "alpacaeval-easy" and "id" in rows[0]
      again = benchmarks.rewardbench_summary((r["subset"], r["correct"]) for r in rows)
      assert again["overall"] == pytest.approx(summary["overall"])
      assert all((r["score_chosen"] > r["score_rejected"]) == r["correct"] for r in rows)
    elif kind == "judgebench":
      again = benchmarks.judgebench_summary((r["source"], r["correct"]) for r in rows)
      assert again["groups"] == pytest.approx(summary["groups"])
      assert summary["overall"] > 0.75  # the fine-tuned model knows the category task
    else:
      assert np.asarray(rows[0]["score_chosen"]).shape == (3, 3)
      again = benchmarks.rmbench_summary(("chat", np.asarray(r["correct"])) for r in rows)
      assert again["overall"] == pytest.approx(summary["overall"])
      assert set(summary["domains"]) == {"chat"}
    assert "| " in open(os.path.join(out, stem, "report.md")).read()


def test_evaluate_real_rmbench_file(finetuned, tmp_path):
  path = os.path.join(SHARED_DATA, "rm-bench", "chat_filtered.json")
  if not os.path.exists(path):
    pytest.skip("shared RM-Bench data not present")
  out = str(tmp_path / "eval")
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={finetuned}",
                        f"--config.eval.files={path}", f"--config.workdir={out}",
                        "--config.eval.max_len=160", "--config.template.judge=compact",
                        "--config.eval.batch_size=64")
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.load(open(os.path.join(out, "chat_filtered", "summary.json")))
  assert summary["items"] == 129 and set(summary["domains"]) == {"chat"}
  assert summary["trimmed_pairs"] > 0  # real responses exceed the tiny budget: counted


def test_evaluate_requires_model_and_files(tmp_path):
  result = cli.run_main("configs/evaluate.py", f"--config.workdir={tmp_path}")
  assert "config.model.path: required" in cli.error_line(result)
