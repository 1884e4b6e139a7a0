"""Self-training on data files (not the built-in generator), preempted (SIGTERM) while labeling
a round, killed (SIGKILL) while training in it, and rerun: each time it resumes where it was
and ends with the same kept pairs and results as an unbroken run."""
import importlib.util
import json
import os
import shutil
import signal

import pytest

from gram_jax import GramError, configlib, journal
from gram_jax.data import synthetic
from tests.helpers import cli

CONFIG = "configs/self_train.py"
TASKS = ("category",)


def _write_data(folder) -> list[str]:
  files = {
      "seed_files": synthetic.as_proved(synthetic.make_pairs(120, 0, TASKS), 0),
      "labeled_files": synthetic.make_pairs(12, 1, TASKS),
      "unlabeled_files": synthetic.as_unlabeled(synthetic.make_pairs(48, 2, TASKS), 3),
      "heldout_files": synthetic.make_pairs(16, 4, TASKS),
      # the target task: half the rows bring their own rationale (HelpSteer3-style)
      "task_files": list(synthetic.as_proved(synthetic.make_pairs(6, 5, TASKS), 5)) +
                    synthetic.make_pairs(6, 6, TASKS)}
  return [f"--config.self_train.{field}=" +
          journal.write_jsonl(rows, str(folder / f"{field}.jsonl"))
          for field, rows in files.items()]


def _overrides(workdir, data) -> list[str]:
  small = dict(rounds=1, prover_steps=30, policy_steps=30, round_steps=30, policy_epochs=1.0,
               max_new_tokens=48, batch_size=16, baseline=False, final_finetune_steps=10)
  return [f"--config.workdir={workdir}", "--config.checkpoint.every_steps=10",
          *data, *[f"--config.self_train.{k}={v}" for k, v in small.items()]]


def _kept(workdir) -> tuple[dict, list[str]]:
  stats = json.load(open(os.path.join(workdir, "round_1", "labels.json")))
  kept = open(os.path.join(workdir, "round_1", "kept.jsonl")).read().splitlines()
  return stats, kept


def test_preempted_then_killed_inside_a_round_resumes_with_the_same_results(tmp_path):
  data = _write_data(tmp_path)
  unbroken = tmp_path / "unbroken"
  result = cli.run_main(CONFIG, *_overrides(unbroken, data), timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  stages = [json.loads(l)["stage"] for l in open(unbroken / "rounds.jsonl")]
  assert stages == ["warm start", "round 1", "task adaptation (rationale + verdict SFT)"]
  # Task rows with their own rationale are trained on as written; π_ψ proves only the rest.
  assert cli.jsonl_lines(str(unbroken / "final" / "task_rationales.jsonl")) == 6
  assert cli.jsonl_lines(str(unbroken / "final" / "proofs.jsonl")) == 12  # 6 pairs x 2 orders
  assert "12 task pairs, 6 with their own rationale" in open(unbroken / "report.md").read()

  broken = tmp_path / "broken"  # the unbroken run's state before round 1, then round 1 again
  shutil.copytree(unbroken, broken)
  for later in ("round_1", "final", "rounds.jsonl", "report.md", "hf"):
    target = broken / later
    shutil.rmtree(target) if target.is_dir() else target.unlink()
  journal_path = str(broken / "round_1" / "judged.jsonl.journal")
  code, seconds, err = cli.signal_when(  # preempted while π_φ labels round 1's pool
      CONFIG, _overrides(broken, data), lambda: cli.jsonl_lines(journal_path) >= 2,
      signal.SIGTERM, timeout=600)
  assert code == 0 and seconds < 30, err[-3000:]
  labeled = cli.jsonl_lines(journal_path) - 1
  assert 0 < labeled < 48 and not (broken / "round_1" / "judged.jsonl").exists()

  checkpoints = broken / "round_1" / "policy" / "checkpoints"
  code, _, err = cli.signal_when(  # then killed while round 1's π_φ trains
      CONFIG, _overrides(broken, data), lambda: checkpoints.is_dir() and any(
          p.name.isdigit() for p in checkpoints.iterdir()), signal.SIGKILL, timeout=600)
  assert code == -signal.SIGKILL
  assert f"resuming at item {labeled} of 48" in err  # the labeled part was not redone
  judged_at = os.path.getmtime(broken / "round_1" / "judged.jsonl")
  assert not (broken / "rounds.jsonl").exists()

  result = cli.run_main(CONFIG, *_overrides(broken, data), timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.getmtime(broken / "round_1" / "judged.jsonl") == judged_at  # not relabeled
  assert _kept(broken) == _kept(unbroken)
  rows = lambda d: [json.loads(l) for l in open(d / "rounds.jsonl")]
  assert rows(broken) == rows(unbroken)


def test_real_data_needs_seed_labeled_and_unlabeled_files(tmp_path):
  spec = importlib.util.spec_from_file_location("self_train_config",
                                                os.path.join(cli.ROOT, CONFIG))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.self_train.labeled_files = str(tmp_path / "labeled.jsonl")
  with pytest.raises(GramError, match="config.self_train.seed_files: required"):
    configlib.validate(c)
  c.self_train.seed_files = c.self_train.unlabeled_files = c.self_train.labeled_files
  with pytest.raises(GramError, match="self_train.task_files: required for task adaptation"):
    configlib.validate(c)
  c.self_train.task_files = c.self_train.labeled_files
  with pytest.raises(GramError, match="self_train.task_files: the same files as labeled"):
    configlib.validate(c)
  c.self_train.task_files = str(tmp_path / "task.jsonl")
  with pytest.raises(GramError, match="self_train.seed_files: .*data file not found"):
    configlib.validate(c)
