"""The main job's mechanics end to end, on a small built-in configuration: majority votes
over sampled judgments, rule checks and drop reasons, the matched baseline, task
adaptation, and an export that holds the model the report's last row measured.

How well it works is measured by `bench/self_train_seeds.py` (three seeds of the default
run; README's table), not asserted here: a margin on a tiny model would not hold on every
machine."""
import collections
import json

import numpy as np
import torch
import transformers

import gram_jax
from gram_jax.data import synthetic
from tests.helpers import cli

SMALL = dict(seed_pairs=120, labeled_pairs=24, unlabeled_pairs=48, heldout_pairs=40,
             prover_steps=60, policy_steps=60, round_steps=30, policy_epochs=1.0,
             final_finetune_steps=20, task_pairs=24)


def stats_of(rows: list[dict], round_index: int) -> dict:
  return next(r for r in rows if r["stage"] == f"round {round_index}")


def test_self_training_rounds_vote_filter_and_export_the_last_measured_model(tmp_path):
  workdir = tmp_path / "self_train"
  result = cli.run_main("configs/self_train.py", f"--config.workdir={workdir}",
                        *[f"--config.self_train.{k}={v}" for k, v in SMALL.items()],
                        timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(l) for l in open(workdir / "rounds.jsonl")]
  assert [r["stage"] for r in rows] == [
      "labeled-only fine-tuning (same gold labels)", "warm start", "round 1", "round 2",
      "task adaptation (rationale + verdict SFT)"]
  assert "| round 2 |" in result.stdout and "dropped: tie / split" in result.stdout

  for r in (1, 2):
    judged = [json.loads(l) for l in open(workdir / f"round_{r}" / "judged.jsonl")]
    assert len(judged) == 48
    assert stats_of(rows, r)["judge_prompts_trimmed"] == sum(row["trimmed"] for row in judged)
    for row in judged:  # 3 sampled judgments per order, each rule-checked
      assert [j["swapped"] for j in row["judgments"]] == [False] * 3 + [True] * 3
      valid = [j for j in row["judgments"] if j["problem"] is None]
      picks = [(j["verdict"] == "A") != j["swapped"] for j in valid if j["verdict"]]
      assert row["votes"] == [picks.count(True), picks.count(False)]
      assert row["abstained"] == 6 - len(valid)
    stats = json.load(open(workdir / f"round_{r}" / "labels.json"))
    reasons = collections.Counter(row["drop_reason"] for row in judged)
    assert stats["kept"] == reasons[None] and stats["judged"] == 48
    assert stats["drop_reasons"] == {k: reasons[k] for k in stats["drop_reasons"]}
    kept = [json.loads(l) for l in open(workdir / f"round_{r}" / "kept.jsonl")]
    assert kept == [row for row in judged if row["drop_reason"] is None]
    assert rows[1 + r]["drop_reasons"] == stats["drop_reasons"]

  # The baseline trained on every gold label the reasoning side used, no more.
  gold = [json.loads(l) for l in open(workdir / "baseline" / "gold_pairs.jsonl")]
  assert len(gold) == SMALL["seed_pairs"] + SMALL["labeled_pairs"] + SMALL["task_pairs"]
  heldout = {synthetic.pair_key(p["prompt"], p["chosen"], p["rejected"])
             for p in map(json.loads, open(workdir / "data" / "heldout.jsonl"))}
  assert not heldout & {synthetic.pair_key(g["prompt"], g["chosen"], g["rejected"])
                        for g in gold}

  # hf/ holds the task-adapted π_φ that the last row measured, read as it was measured.
  card = json.load(open(workdir / "hf" / "judge.json"))
  assert card["reasoning"]["votes"] == 2 and card["reasoning"]["orders"] == 2  # 1 per order
  assert card["reasoning"]["temperature"] == 0.0 and card["chat_template"] is None
  exported = transformers.AutoModelForCausalLM.from_pretrained(workdir / "hf").eval()
  measured = gram_jax.load_pretrained(str(workdir / "final" / "policy"))
  ids = np.array([[5, 17, 33, 2, 90, 41]], np.int32)
  with torch.no_grad():
    expected = exported(torch.tensor(ids, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(np.asarray(measured(ids, np.ones_like(ids))), expected,
                             rtol=1e-4, atol=1e-4)
