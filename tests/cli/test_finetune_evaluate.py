"""Stages finetune and evaluate end to end on the built-in task, through the CLI."""
import json
import os

import numpy as np
import pytest

from gram_jax.data import synthetic
from gram_jax.data.encode import JudgeEncoder
from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import Reasoning, read_judge_card, write_judge_card
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from gram_jax.training.metrics import read_jsonl_metrics
from tests.helpers import cli, hf_fixtures
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("finetune"))
  result = cli.run_main("configs/finetune.py", f"--config.workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_finetune_raises_heldout_accuracy_well_above_chance(finetuned):
  data = os.path.join(finetuned, "data")
  key = lambda p: synthetic.pair_key(p["prompt"], p["chosen"], p["rejected"])
  read = lambda name: [key(json.loads(l)) for l in open(os.path.join(data, name))]
  train, heldout = read("train_pairs.jsonl"), read("eval_pairs.jsonl")
  assert not set(train) & set(heldout) and len(set(heldout)) == len(heldout) == 200
  evals = read_jsonl_metrics(os.path.join(finetuned, "eval_metrics.jsonl"))
  accuracy = [evals[s]["accuracy"] for s in sorted(evals)]
  print("held-out accuracy by eval:", accuracy)
  assert accuracy[-1] >= 0.8 and accuracy[-1] > accuracy[0]


def test_a_finetuned_judge_is_read_with_the_prompt_it_was_trained_with(finetuned):
  card = read_judge_card(finetuned)  # finetune trains with the compact prompt by default
  assert card["template"] == templates.COMPACT_JUDGE_PROMPT and card["reasoning"] is None
  reward = RewardModel.from_pretrained(finetuned)  # evaluate / serve read it the same way
  assert reward.encoder.template == templates.COMPACT_JUDGE_PROMPT


def _unseen_pairs(finetuned: str, count: int) -> list[dict]:
  """Comparison pairs the fine-tuning never saw (checked against its training file)."""
  train = [json.loads(l) for l in open(os.path.join(finetuned, "data", "train_pairs.jsonl"))]
  seen = {synthetic.pair_key(p["prompt"], p["chosen"], p["rejected"]) for p in train}
  pairs = [p for p in synthetic.make_pairs(600, seed=77, tasks=("comparison",))
           if synthetic.pair_key(p["prompt"], p["chosen"], p["rejected"]) not in seen]
  assert len(pairs) >= count
  return pairs[:count]


# The official groupings, written out here: one subset per RewardBench group, one source
# per JudgeBench group.
RB_GROUPS = {"alpacaeval-easy": "chat", "mt-bench-hard": "chat-hard", "donotanswer": "safety",
             "math-prm": "reasoning"}
JB_GROUPS = {"mmlu-pro-law": "Knowledge", "livebench-reasoning": "Reasoning",
             "livebench-math": "Math", "livecodebench": "Coding"}


def _benchmark_files(tmp_path, pairs):
  subsets, sources = list(RB_GROUPS), list(JB_GROUPS)
  rewardbench = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
                  "subset": subsets[i % 4], "id": i} for i, p in enumerate(pairs)]
  judgebench = [{"question": p["prompt"], "response_A": p["chosen"], "response_B": p["rejected"],
                 "label": "A>B", "source": sources[i % 4], "pair_id": i}
                for i, p in enumerate(pairs)]
  rmbench = [{"id": i, "prompt": p["prompt"], "chosen": [p["chosen"]] * 3,
              "rejected": [p["rejected"], p["rejected"] + " Indeed.", "**" + p["rejected"] + "**"],
              "domain": "safety-refuse" if i % 2 else "safety-response"}
             for i, p in enumerate(pairs[:12])]
  files = {"rewardbench.json": rewardbench, "judgebench.jsonl": judgebench,
           "rmbench_safety.json": rmbench}
  paths = []
  for name, rows in files.items():
    path = tmp_path / name
    if name.endswith(".jsonl"):
      path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
      path.write_text(json.dumps(rows))
    paths.append(str(path))
  return paths


def _group_means(keys: list[str], flags: list[bool]) -> dict[str, float]:
  groups = {}
  for key, flag in zip(keys, flags):
    groups.setdefault(key, []).append(flag)
  return {k: float(np.mean(v)) for k, v in groups.items()}


def test_evaluate_writes_results_and_official_summaries(finetuned, tmp_path):
  pairs = _unseen_pairs(finetuned, 40)
  files = _benchmark_files(tmp_path, pairs)
  out = str(tmp_path / "eval")
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={finetuned}",
                        f"--config.eval.files={','.join(files)}", f"--config.workdir={out}",
                        "--config.template.judge=compact", "--config.eval.max_len=64")
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(os.path.join(out, "report.md"))
  # Scores and readouts come from the model directly, not from the evaluate stage.
  reward = RewardModel.from_pretrained(finetuned, max_len=64,
                                       template=templates.COMPACT_JUDGE_PROMPT)
  triples = [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
  scores = reward.score_batch(triples)
  first, second, _ = reward.scorer.order_probs(triples)
  correct = list(scores[:, 0] > scores[:, 1])
  consistent = list((first[:, 0] > first[:, 1]) == (second[:, 1] > second[:, 0]))

  summary = json.load(open(os.path.join(out, "rewardbench", "summary.json")))
  rows = [json.loads(l) for l in open(os.path.join(out, "rewardbench", "results.jsonl"))]
  assert rows[0]["subset"] == "alpacaeval-easy" and "id" in rows[0]
  np.testing.assert_allclose([[r["score_chosen"], r["score_rejected"]] for r in rows], scores,
                             atol=1e-6)
  groups = _group_means([RB_GROUPS[r["subset"]] for r in rows], correct)
  assert summary["groups"] == pytest.approx(groups)
  assert summary["overall"] == pytest.approx(np.mean(list(groups.values())))
  assert summary["position_consistency"] == pytest.approx(np.mean(consistent))

  summary = json.load(open(os.path.join(out, "judgebench", "summary.json")))
  groups = _group_means([JB_GROUPS[s] for s in list(JB_GROUPS) * 10], correct)
  assert summary["groups"] == pytest.approx(groups)
  assert summary["micro"] == pytest.approx(np.mean(correct))
  assert summary["macro"] == pytest.approx(np.mean(list(groups.values())))
  report = open(os.path.join(out, "judgebench", "report.md")).read()
  assert "micro (official scorer)" in report and "Position consistency" in report

  summary = json.load(open(os.path.join(out, "rmbench_safety", "summary.json")))
  rows = [json.loads(l) for l in open(os.path.join(out, "rmbench_safety", "results.jsonl"))]
  assert np.asarray(rows[0]["score_chosen"]).shape == (3, 3)
  assert list(summary["domains"]) == ["safety"] and summary["domains"]["safety"]["items"] == 12
  wins = np.array([r["correct"] for r in rows], float)  # [item, chosen i, rejected j]
  assert summary["overall"]["hard"] == pytest.approx(wins[:, [0, 0, 1], [1, 2, 2]].mean())
  assert summary["overall"]["normal"] == pytest.approx(wins[:, [0, 1, 2], [0, 1, 2]].mean())


def _evaluate_shared(model: str, files: list[str], tmp_path) -> str:
  """The evaluate CLI on real files with the tiny model's budget; returns its workdir."""
  out = str(tmp_path / "eval")
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={model}",
                        f"--config.eval.files={','.join(files)}", f"--config.workdir={out}",
                        "--config.eval.max_len=160", "--config.template.judge=compact",
                        "--config.eval.batch_size=64")
  assert result.returncode == 0, result.stderr[-3000:]
  return out


def test_evaluate_real_rmbench_file(finetuned, tmp_path):
  path = os.path.join(SHARED_DATA, "rm-bench", "chat_filtered.json")
  if not os.path.exists(path):
    pytest.skip(f"RM-Bench data not present in {SHARED_DATA} "
                "(the shared data folder; docs/data.md)")
  out = _evaluate_shared(finetuned, [path], tmp_path)
  summary = json.load(open(os.path.join(out, "chat_filtered", "summary.json")))
  assert summary["items"] == 129 and set(summary["domains"]) == {"chat"}
  assert summary["trimmed_pairs"] > 0  # real responses exceed the tiny budget: counted


def test_evaluate_llmbar_in_its_own_format_as_rewardbench_chat_hard(finetuned, tmp_path):
  natural = os.path.join(SHARED_DATA, "llmbar", "LLMBar", "Natural", "dataset.json")
  neighbor = os.path.join(SHARED_DATA, "llmbar", "LLMBar", "Adversarial", "Neighbor",
                          "dataset.json")
  if not os.path.exists(natural):
    pytest.skip(f"LLMBar data not present in {SHARED_DATA} "
                "(the shared data folder; docs/data.md)")
  out = _evaluate_shared(finetuned, [natural, neighbor], tmp_path)
  for folder, subset, count in (("Natural_dataset", "llmbar-natural", 100),
                                ("Neighbor_dataset", "llmbar-adver-neighbor", 134)):
    summary = json.load(open(os.path.join(out, folder, "summary.json")))
    rows = [json.loads(l) for l in open(os.path.join(out, folder, "results.jsonl"))]
    recount = float(np.mean([r["score_chosen"] > r["score_rejected"] for r in rows]))
    assert summary["pairs"] == count and list(summary["subsets"]) == [subset]
    assert summary["groups"] == {"chat-hard": pytest.approx(recount)}


def _results(out: str, folder: str) -> tuple[dict, list[dict]]:
  summary = json.load(open(os.path.join(out, folder, "summary.json")))
  return summary, [json.loads(l) for l in open(os.path.join(out, folder, "results.jsonl"))]


def test_evaluate_pandalm_hhh_and_rmb_in_their_own_formats(finetuned, tmp_path):
  files = [os.path.join(SHARED_DATA, *parts) for parts in (
      ("pandalm", "testset-v1.json"), ("hhh-alignment", "hhh_alignment_eval.json"),
      ("rmb", "BoN_set", "Helpfulness", "Chat"),
      ("rmb", "Pairwise_set", "Harmlessness", "S1.json.gz"))]
  if not all(os.path.exists(f) for f in files):
    pytest.skip(f"PandaLM / HHH / RMB data not present in {SHARED_DATA} "
                "(the shared data folder; docs/data.md)")
  out = _evaluate_shared(finetuned, files, tmp_path)
  wins = lambda rows: [r["score_chosen"] > r["score_rejected"] for r in rows]

  summary, rows = _results(out, "testset-v1")
  assert summary["benchmark"] == "pandalm" and summary["ties_excluded"] == 105
  assert len(rows) == summary["pairs"] == 894 and summary["unanimous_pairs"] == 426 + 368
  assert summary["accuracy"] == pytest.approx(np.mean(wins(rows)))

  summary, rows = _results(out, "hhh_alignment_eval")
  assert summary["benchmark"] == "hhh" and len(rows) == 221
  assert summary["groups"] == pytest.approx(_group_means([r["source"] for r in rows],
                                                         wins(rows)))
  assert summary["overall"] == pytest.approx(np.mean(wins(rows)))

  # RMB best-of-n: a group counts only when its best answer beats every loser; a goal is
  # the mean of its subsets (one file each).
  summary, rows = _results(out, "Chat")
  assert summary["benchmark"] == "rmb_bon" and len(rows) == 71 + 59 + 25
  won = [all(b > l for b, l in zip(r["score_best"], r["score_losers"])) for r in rows]
  assert [r["correct"] for r in rows] == won
  by_subset = _group_means([r["category_path"] for r in rows], won)
  assert len(by_subset) == 3
  assert summary["groups"] == {"Helpfulness": pytest.approx(np.mean(list(by_subset.values())))}

  summary, rows = _results(out, "S1")
  assert summary["benchmark"] == "rmb" and len(rows) == 459
  assert summary["groups"] == {"Harmlessness": pytest.approx(np.mean(wins(rows)))}


def test_evaluate_requires_model_and_files(tmp_path):
  result = cli.run_main("configs/evaluate.py", f"--config.workdir={tmp_path}")
  assert "config.model.path: required" in cli.error_line(result)


def test_evaluate_reports_every_readout_of_a_reasoning_judge(tmp_path):
  model = str(tmp_path / "rr")
  hf_fixtures.make_hf_model("qwen3", model, with_tokenizer=True)
  write_judge_card(model, templates.COMPACT_RR_PROMPT, ("A", "B"), Reasoning(max_new_tokens=8))
  pairs = synthetic.make_pairs(12, seed=3, tasks=("category",))
  files = _benchmark_files(tmp_path, pairs)
  out = str(tmp_path / "eval")
  result = cli.run_main("configs/evaluate.py", f"--config.model.path={model}",
                        f"--config.eval.files={files[1]},{files[2]}", f"--config.workdir={out}",
                        "--config.eval.max_len=128", "--config.reasoning.votes=6",
                        "--config.reasoning.temperature=1.0")
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.load(open(os.path.join(out, "judgebench", "summary.json")))
  rows = [json.loads(l) for l in open(os.path.join(out, "judgebench", "results.jsonl"))]
  # Recount from each pair's votes: 3 judgments per order, majority over all six.
  assert all(r["for_chosen"] + r["for_rejected"] + r["no_verdict"] == 6 for r in rows)
  voting = [r["for_chosen"] > r["for_rejected"] for r in rows]
  assert [r["correct"] for r in rows] == voting
  assert summary["votes"] == 6 and summary["voting_accuracy"] == pytest.approx(np.mean(voting))
  assert summary["micro"] == pytest.approx(np.mean(voting))
  assert summary["tied_pairs"] == sum(r["for_chosen"] == r["for_rejected"] > 0 for r in rows)
  assert summary["no_verdict_judgments"] == sum(r["no_verdict"] for r in rows)
  assert summary["position_consistency"] == pytest.approx(np.mean([r["consistent"] for r in rows]))
  report = open(os.path.join(out, "report.md")).read()
  for text in ("micro (official scorer)", "macro (mean of groups)", "voting@6",
               "parsed verdict, one judgment per order", "Position consistency",
               "| safety | 12 |"):
    assert text in report
  # The same judgments as the model gives directly (samples depend on seed and pair only).
  direct = RewardModel.from_pretrained(model, max_len=128, reasoning=Reasoning(
      max_new_tokens=8, temperature=1.0, votes=6))
  judged = direct.judge_batch([(p["prompt"], p["chosen"], p["rejected"]) for p in pairs])
  assert [[j.vote.for_a, j.vote.for_b] for j in judged] == [
      [r["for_chosen"], r["for_rejected"]] for r in rows]


def test_the_release_preset_reads_a_cardless_model_as_released_in_either_protocol(tmp_path):
  model = str(tmp_path / "released")  # a checkpoint from elsewhere: no judge.json
  hf_fixtures.make_hf_model("qwen3", model, with_tokenizer=True)
  pairs = synthetic.make_pairs(6, seed=4, tasks=("category",))
  pairs[0]["rejected"] += " and more" * 60  # the one pair over the prompt budget
  encoder = JudgeEncoder(tok.load_tokenizer(model), 1 << 20, templates.GRAM_RR_PROMPT)
  lengths = [max(len(encoder.encode_all([(p["prompt"], a, b)])[0])
                 for a, b in ((p["chosen"], p["rejected"]), (p["rejected"], p["chosen"])))
             for p in pairs]
  budget = max(lengths[1:]) + 4
  assert lengths[0] > budget
  files = _benchmark_files(tmp_path, pairs)
  common = [f"--config.model.path={model}", f"--config.eval.files={files[1]}",
            "--config.reasoning.preset=release", "--config.reasoning.max_new_tokens=8",
            f"--config.eval.max_len={budget}"]
  wrong = cli.run_main("configs/evaluate.py", *common, "--config.template.judge=gram",
                       f"--config.workdir={tmp_path / 'wrong'}")
  assert "config.template.judge=gram is a verdict-only prompt, but " \
         "config.reasoning.preset=release makes this a reasoning judge" in cli.error_line(wrong)
  for orders, protocol in ((1, "orders=1 (the release protocol"), (2, "orders=2 (1 per order")):
    out = tmp_path / f"orders_{orders}"
    result = cli.run_main("configs/evaluate.py", *common, f"--config.reasoning.orders={orders}",
                          f"--config.workdir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = open(out / "report.md").read()
    for text in ("prompt gram_rr", protocol, f"votes={orders}", "temperature=0.75",
                 f"Pairs trimmed to fit the prompt budget of {budget} tokens: 1."):
      assert text in report, text
    rows = [json.loads(l) for l in open(out / "judgebench" / "results.jsonl")]
    assert all(len(r["replies"]) == orders for r in rows)  # what the judge wrote, kept
    assert [r["trimmed"] for r in rows] == [True] + [False] * 5
