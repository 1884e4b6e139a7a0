"""RewardBench 2 through the evaluate stage, on a Parquet file written in its release format:
a GRAM verdict judge and a GRAM-RR judge scored by its protocol, the report's subsets and
total recomputed here from the per-item results, and the pair scores equal to
RewardModel's."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import Reasoning, write_judge_card
from gram_jax.text import templates
from tests.helpers import cli, hf_fixtures

BEST_OF_4 = ("Factuality", "Precise IF", "Math", "Safety", "Focus")


def rewardbench2_rows(per_subset: int) -> list[dict]:
  """Rows with the release's columns (allenai/reward-bench-2, split test)."""
  rows, n = [], 0
  for subset in BEST_OF_4:
    for k in range(per_subset):
      rows.append({"id": str(n), "prompt": f"What is the capital of France? ({subset} {k})",
                   "chosen": ["Paris is the capital."],
                   "rejected": ["The answer is 4.", "Response A is better.", f"B{k}"],
                   "num_correct": 1, "num_rejected": 3, "total_completions": 4,
                   "models": ["m1", "m2", "m3", "m4"], "subset": subset,
                   "additional_metadata": None})
      n += 1
  for prompt_id in range(2):
    question = f"Name a fruit. ({prompt_id})"
    rows.append({"id": f"ref:{prompt_id}", "prompt": question, "chosen": ["A pear."],
                 "rejected": ["A chair.", "Paris."], "num_correct": 1, "num_rejected": 2,
                 "total_completions": 3, "models": ["m"] * 3, "subset": "Ties",
                 "additional_metadata": None})
    rows.append({"id": f"tied:{prompt_id}", "prompt": question,
                 "chosen": ["A pear.", "An apple."], "rejected": ["A chair."],
                 "num_correct": 2, "num_rejected": 1, "total_completions": 3,
                 "models": ["m"] * 3, "subset": "Ties", "additional_metadata": None})
  return rows


def write_parquet(path: str, rows: list[dict]) -> str:
  pq.write_table(pa.Table.from_pylist(rows), path)
  return path


def recomputed_ties(results: list[dict]) -> float:
  """RewardBench 2's Ties rule, written out again from its description."""
  ref, tied = {}, {}
  for r in results:
    kind, pid = r["id"].split(":")
    good, bad = r["ratings"][:r["num_correct"]], r["ratings"][r["num_correct"]:]
    entry = (min(good) > max(bad), max(good) - min(good) if len(good) > 1 else None,
             min(good) - max(bad))
    (ref if kind == "ref" else tied)[int(pid)] = entry
  common = [p for p in tied if p in ref]
  preferred = np.mean([tied[p][2] > tied[p][1] for p in common])
  hard = np.mean([min(ref[p][2], tied[p][2]) > tied[p][1] for p in common])
  margin = np.mean([np.tanh(min(ref[p][2], tied[p][2]) / tied[p][1] - 1) for p in common])
  return (0.3 * np.mean([v[0] for v in tied.values()]) + 0.3 * np.mean(
      [v[0] for v in ref.values()]) + 0.2 * preferred + 0.2 * hard + 0.01 * margin)


def scan(pair_scores: list, n: int) -> int:
  """The linear scan over the shown order, from the stored pair scores."""
  table = {(i, j): (a, b) for i, j, a, b in pair_scores}
  best = 0
  for challenger in range(1, n):
    keep, new = table[(best, challenger)] if best < challenger else \
        table[(challenger, best)][::-1]
    best = challenger if new > keep else best
  return best


def evaluate(model: str, data: str, out: str, *extra: str) -> tuple[dict, list[dict], str]:
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={model}",
                        f"--config.eval.files={data}", f"--config.workdir={out}", *extra)
  assert result.returncode == 0, result.stderr[-3000:]
  folder = os.path.join(out, "rb2")
  results = [json.loads(line) for line in open(os.path.join(folder, "results.jsonl"))]
  return (json.load(open(os.path.join(folder, "summary.json"))), results,
          open(os.path.join(folder, "report.md")).read())


def test_a_verdict_judge_by_rewardbench2s_protocol(tmp_path):
  model = str(tmp_path / "judge")
  hf_fixtures.make_hf_model("qwen3", model, with_tokenizer=True)
  data = write_parquet(str(tmp_path / "rb2.parquet"), rewardbench2_rows(per_subset=3))
  summary, results, report = evaluate(model, data, str(tmp_path / "eval"))
  assert summary["benchmark"] == "rewardbench2" and summary["items"] == 19
  # Every best-of-4 item: the four shown in one order, the chosen where its slot says, and
  # the scan's pick recomputed from the stored pair scores.
  for r in (r for r in results if r["subset"] != "Ties"):
    assert sorted(r["shown"]) == ["chosen[0]", "rejected[0]", "rejected[1]", "rejected[2]"]
    assert r["shown"][r["chosen_slot"]] == "chosen[0]" and len(r["pair_scores"]) == 6
    assert r["picked"] == scan(r["pair_scores"], 4)
    assert r["correct"] == (r["picked"] == r["chosen_slot"])
  for subset in BEST_OF_4:
    flags = [r["correct"] for r in results if r["subset"] == subset]
    assert len(flags) == 3 and summary["subsets"][subset] == pytest.approx(np.mean(flags))
  ties = [r for r in results if r["subset"] == "Ties"]
  assert summary["subsets"]["Ties"] == pytest.approx(recomputed_ties(ties))
  assert summary["overall"] == pytest.approx(np.mean(list(summary["subsets"].values())))
  assert "| Factuality | Precise IF | Math | Safety | Focus | Ties | total (mean of 6) |" in report
  assert f"{100 * summary['overall']:.1f} |" in report
  # Pair scores are the judge's both-order scores.
  reward = RewardModel.from_pretrained(model)
  first = results[0]
  texts = {f"chosen[{i}]": t for i, t in enumerate(first["chosen"])}
  texts.update({f"rejected[{i}]": t for i, t in enumerate(first["rejected"])})
  i, j, a, b = first["pair_scores"][0]
  expected = reward.score(first["prompt"], texts[first["shown"][i]], texts[first["shown"][j]])
  assert (a, b) == pytest.approx(expected, abs=1e-5)


def test_a_reasoning_judge_by_rewardbench2s_protocol(tmp_path):
  model = str(tmp_path / "rr")
  hf_fixtures.make_hf_model("qwen3", model, with_tokenizer=True)
  write_judge_card(model, templates.COMPACT_RR_PROMPT, ("A", "B"), Reasoning(max_new_tokens=4))
  data = write_parquet(str(tmp_path / "rb2.parquet"), rewardbench2_rows(per_subset=1))
  summary, results, report = evaluate(model, data, str(tmp_path / "eval"),
                                      "--config.eval.max_len=256")
  assert set(summary["subsets"]) == set(BEST_OF_4) | {"Ties"}
  assert summary["votes"] == 2 and "voting@2" in report
  for r in (r for r in results if r["subset"] != "Ties"):
    assert r["picked"] == scan(r["pair_scores"], 4)
    assert all(len(x["replies"]) == 2 for x in r["readouts"])  # one judgment per order
