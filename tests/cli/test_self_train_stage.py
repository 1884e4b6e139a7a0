"""The main job's mechanics end to end, on a small built-in configuration: majority votes
over sampled judgments, rule checks and drop reasons, the matched baseline, task
adaptation, an export that holds the model the report marks (the last row, or the best on
validation pairs), and the report and log that say so.

How well it works is measured by `bench/self_train_seeds.py` (three seeds of the default
run; README's table), not asserted here: a margin on a tiny model would not hold on every
machine."""
import collections
import json
import re

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


STAGES = ["labeled-only fine-tuning (same gold labels)", "warm start", "round 1", "round 2",
          "task adaptation (rationale + verdict SFT)"]


def run_small(workdir, *overrides: str):
  result = cli.run_main("configs/self_train.py", f"--config.workdir={workdir}",
                        *[f"--config.self_train.{k}={v}" for k, v in SMALL.items()],
                        *overrides, timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def verdict_accuracy(path) -> tuple[float, int]:
  """A judgments file re-read: each order's verdict votes (the response shown first is A;
  no verdict, no vote) and a pair is right when the chosen response gets more votes."""
  rows = [json.loads(l) for l in open(path)]
  right = []
  for row in rows:
    assert sorted(j["shown_first"] for j in row["judgments"]) == ["chosen", "rejected"]
    picks = [(j["verdict"] == "A") == (j["shown_first"] == "chosen")
             for j in row["judgments"] if j["verdict"] in ("A", "B")]
    right.append(picks.count(True) > picks.count(False))
  return float(np.mean(right)), len(rows)


def test_self_training_rounds_vote_filter_and_export_the_last_measured_model(tmp_path):
  workdir = tmp_path / "self_train"
  result = run_small(workdir)
  rows = [json.loads(l) for l in open(workdir / "rounds.jsonl")]
  assert [r["stage"] for r in rows] == STAGES
  assert "| round 2 |" in result.stdout and "dropped: tie / split" in result.stdout

  # The report says what ran and what was exported, and explains its columns; the log says
  # each phase's progress and each stage's held-out figures as they are measured.
  assert result.stdout.startswith("# GRAM-R² self-training\n\nSeed 0; ")
  assert "Exported to hf/: **task adaptation (rationale + verdict SFT)** (export=final" \
      in result.stdout
  assert "| task adaptation (rationale + verdict SFT) **(exported)** |" in result.stdout
  assert "- held-out verdict acc.:" in result.stdout
  assert json.load(open(workdir / "config.json"))["self_train"]["rounds"] == 2
  for phase in ("warm start: proving: proof 48/48", "round 2: judging the unlabeled pool: "
                "pair 48/48", f"train {workdir}/round_2/policy: step 30/30",
                "task adaptation: held-out judging: pair 40/40"):
    assert phase in result.stderr, phase
  for row in rows[1:]:
    accuracy, pairs = verdict_accuracy(workdir / row["model"].split("/")[-2] / "heldout.jsonl")
    assert pairs == SMALL["heldout_pairs"] and accuracy == row["heldout_accuracy"]
    assert f"] {row['stage']}: " in result.stderr and \
        f"held-out verdict accuracy {100 * accuracy:.1f} %" in result.stderr
  assert "Given directory is read only" not in result.stderr

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

  # Rerun choosing the export on validation pairs: nothing is trained again; each candidate
  # is judged on 24 pairs of its own, none held out, and the best goes to hf/.
  result = run_small(workdir, "--config.self_train.export=best_validation",
                     "--config.self_train.validation_pairs=24")
  resumed = re.findall(r"resumed at step (\d+) of (\d+)", result.stderr)
  assert "starting at step 0 of" not in result.stderr and all(a == b for a, b in resumed)
  validation = [json.loads(l) for l in open(workdir / "data" / "validation.jsonl")]
  assert len(validation) == 24 and not heldout & {
      synthetic.pair_key(p["prompt"], p["chosen"], p["rejected"]) for p in validation}
  figures = [verdict_accuracy(workdir / folder / "validation.jsonl")[0]
             for folder in ("round_0", "round_1", "round_2", "final")]
  best = max(range(4), key=lambda i: (figures[i], i))
  assert f"| {STAGES[1 + best]} **(exported)** |" in result.stdout
  assert "(export=best_validation: the best validation verdict accuracy " \
         f"({100 * figures[best]:.1f} %) on 24 validation pairs" in result.stdout
  chosen = ["round_0", "round_1", "round_2", "final"][best]
  np.testing.assert_allclose(
      np.asarray(gram_jax.load_pretrained(str(workdir / "hf"))(ids, np.ones_like(ids))),
      np.asarray(gram_jax.load_pretrained(str(workdir / chosen / "policy"))(
          ids, np.ones_like(ids))), rtol=1e-5, atol=1e-5)
