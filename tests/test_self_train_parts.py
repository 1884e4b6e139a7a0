"""Pieces of self-training: order-consistent pseudo-labels, resumable sub-steps, built-in data."""
import json
import os

from gram_jax.reasoning import PairJudgment
from gram_jax.stages import self_train


def _judgment(first, second):
  return PairJudgment(("r1", "r2"), (first, second), 0.6, 0.4)


def test_pseudo_label_needs_both_orders_to_agree():
  assert _judgment("A", "B").preferred == "A"  # A first: A; B first: B (= the same response)
  assert _judgment("B", "A").preferred == "B"
  assert _judgment("A", "A").preferred is None  # position bias, not a preference
  assert _judgment(None, "B").preferred is None and _judgment("A", None).preferred is None


def test_once_runs_a_sub_step_a_single_time(tmp_path):
  calls = []
  make = lambda: calls.append(1) or {"value": len(calls)}
  path = str(tmp_path / "round_1" / "labels.json")
  assert self_train.once(path, make) == {"value": 1}
  assert self_train.once(path, make) == {"value": 1} and len(calls) == 1
  assert not os.path.exists(path + ".tmp")


def test_builtin_data_keeps_gold_aside(tmp_path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(
      os.path.dirname(__file__), "..", "configs", "self_train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("")
  c.workdir = str(tmp_path)
  files = self_train.data_files(c)
  unlabeled = [json.loads(l) for l in open(files["unlabeled"][0])]
  assert len(unlabeled) == c.self_train.unlabeled_pairs and {"A", "B"} == {
      r["gold"] for r in unlabeled}
  seeds = [json.loads(l) for l in open(files["seed"][0])]
  assert all(f"Response {r['label']} is better." in r["rationale"] for r in seeds)
  labeled = open(files["labeled"][0]).read()
  heldout = [json.loads(l)["prompt"] for l in open(files["heldout"][0])]
  assert len(heldout) == c.self_train.heldout_pairs and labeled
