"""The main job end to end on the built-in task: self-training beats warm start beats the
labeled-only baseline on the held-out split, and the final model exports to HF."""
import json
import os

import transformers

from tests import cli


def test_self_training_beats_warm_start_beats_labeled_only(tmp_path):
  workdir = str(tmp_path / "self_train")
  result = cli.run_main("configs/self_train.py", f"--config.workdir={workdir}", timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(l) for l in open(os.path.join(workdir, "rounds.jsonl"))]
  accuracy = {row["stage"]: row["heldout_accuracy"] for row in rows}
  print("held-out accuracy:", accuracy)
  assert "| round 2 |" in result.stdout  # the per-round table is printed
  baseline, warm, final = (accuracy["labeled-only fine-tuning"], accuracy["warm start"],
                           accuracy["round 2"])
  assert final >= warm + 0.03 and warm >= baseline + 0.05
  for row in rows[2:]:
    assert row["kept"] > 0 and row["kept_agree_gold"] > 0.7  # pseudo-labels mostly right
  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.join(workdir, "hf"), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  for r in (0, 1, 2):
    assert os.path.isdir(os.path.join(workdir, f"round_{r}", "policy", "checkpoints"))
  assert os.path.isfile(os.path.join(workdir, "round_1", "judged.jsonl"))
