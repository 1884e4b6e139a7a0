"""bench/replicate_gram.py: its data (replicate_data.py) keeps training and evaluation pairs
disjoint; its steps resume; its figures (replicate_report.py) are checked against the records."""
import gzip
import json
import os
import re
import sys

import pytest

from tests.conftest import SHARED_DATA

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
replicate_data = pytest.importorskip("replicate_data")
replicate_gram = pytest.importorskip("replicate_gram")
replicate_report = pytest.importorskip("replicate_report")
replicate_steps = pytest.importorskip("replicate_steps")


def _raw_questions() -> set[str]:
  """Questions read straight from the raw files, without the package's readers."""
  data = lambda *p: os.path.join(SHARED_DATA, *p)
  asked = set()
  for root, _, names in os.walk(data("llmbar", "LLMBar")):
    for name in names:
      asked |= {r["input"].strip() for r in json.load(open(os.path.join(root, name)))}
  hhh = json.load(open(data("hhh-alignment", "hhh_alignment_eval.json")))
  asked |= {re.search(r"evaluate:\n(.*?)\n\n###Response", r["chosen_instruction"], re.S)[1]
            .strip() for r in hhh}
  asked |= {r["prompt"].strip() for r in json.load(open(data("rm-bench", "chat_filtered.json")))}
  asked |= {r["instruction"].strip() for r in json.load(open(data("pandalm", "testset-v1.json")))
            if not r["input"].strip()}
  for root, _, names in os.walk(data("rmb")):
    for name in names:
      if name.endswith(".gz") and any(f"/{c}" in f"{root}/{name}" for c in (
          "Helpfulness/Code", "Helpfulness/Reasoning", "Harmlessness/S1.", "Harmlessness/multi")):
        rows = json.load(gzip.open(os.path.join(root, name)))
        asked |= {r["conversation_input"][0]["content"].strip() for r in rows
                  if len(r["conversation_input"]) == 1}
  return asked


def test_held_out_pairs_share_no_prompt_with_training_and_none_asks_an_evaluation_question(
    tmp_path):
  if not os.path.isdir(os.path.join(SHARED_DATA, "rmb")):
    pytest.skip(f"benchmark data not present: {SHARED_DATA}/rmb "
                "(the shared data folder; docs/data.md)")
  native = replicate_data.native_eval_sets()
  assert {k: len(v) for k, v in native.items()}["llmbar"] == 100 + 92 + 47 + 46 + 134
  asked = set().union(*map(replicate_data.questions, native.values()))
  pairs, counts = replicate_data.in_distribution_pairs(asked)
  assert len(pairs) > 12000 and counts["dropped_eval_overlap"] > 0
  held_out, rest = replicate_data.split_by_prompt(pairs, 500, replicate_data.SPLIT_SEED)
  assert len(held_out) >= 500 and len(held_out) + len(rest) == len(pairs)
  held_prompts = {p.prompt.strip() for p in held_out}
  assert not held_prompts & {p.prompt.strip() for p in rest}
  # The same split every time (every seed and row is measured on the same pairs).
  again, _ = replicate_data.split_by_prompt(pairs, 500, replicate_data.SPLIT_SEED)
  assert [p.as_row() for p in again] == [p.as_row() for p in held_out]
  prompts = {p.prompt.strip() for p in pairs}
  proofs = json.load(open(replicate_data.seed_proofs(str(tmp_path), asked)))
  assert len(proofs) == 12 and {p["label"] for p in proofs} == {"A", "B"}
  prompts |= {p["prompt"].strip() for p in proofs}
  assert not prompts & asked
  raw = _raw_questions()
  assert len(raw) > 1000 and not prompts & raw


def test_too_few_pairs_to_hold_out_is_refused():
  pairs = [replicate_data.preference.PreferencePair(f"q{i % 3}", "a", "b") for i in range(9)]
  held, rest = replicate_data.split_by_prompt(pairs, 4, 0)
  assert len(held) == 6 and len(rest) == 3  # whole prompts: 3 pairs each
  with pytest.raises(replicate_data.GramError, match="only 9 pairs to hold out, 10 asked"):
    replicate_data.split_by_prompt(pairs, 10, 0)


def _records(flags):
  return [{"correct": f, "avg": float(f), "hard": float(f),
           "category_path": f"Pairwise_set/Helpfulness/s{i % 2}"} for i, f in enumerate(flags)]


def test_a_proportions_bootstrap_interval_is_the_normal_one_for_many_records():
  flags = [i % 10 < 7 for i in range(400)]  # 70 % of 400 right
  results = {name: _records(flags) for name in ("llmbar", "hhh", "rmbench", "pandalm", "rmb",
                                                 "rmb_bon")}
  low, high = replicate_report.intervals(results, resamples=2000)["llmbar"]
  half = 1.96 * (0.7 * 0.3 / 400) ** 0.5  # 0.0449
  assert abs(low - (0.7 - half)) < 0.01 and abs(high - (0.7 + half)) < 0.01
  everything_right = {name: _records([True] * 20) for name in results}
  assert replicate_report.intervals(everything_right, resamples=200)["mean"] == [1.0, 1.0]


def test_a_cached_step_names_its_inputs_not_the_code_that_runs_it(tmp_path, monkeypatch):
  """A run spans sessions and commits: a step is reused while its inputs are unchanged, and
  the code version that finished it is recorded beside it."""
  data = tmp_path / "train.jsonl"
  data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
  key = replicate_steps.fingerprint(["finetune", f"--config.data.train_files={data}"])
  recorded = json.loads(key)
  assert "code" not in recorded and str(data) in recorded["inputs"]
  monkeypatch.setattr(replicate_steps.provenance, "current_code_version",
                      lambda: "commit 0123abcd")
  assert replicate_steps.fingerprint(["finetune", f"--config.data.train_files={data}"]) == key
  data.write_text('{"prompt": "a", "chosen": "c", "rejected": "b"}\n')
  assert replicate_steps.fingerprint(["finetune", f"--config.data.train_files={data}"]) != key
  # A finished step: its marker holds the key and the code that ran it.
  step = tmp_path / "step"
  monkeypatch.setattr(replicate_steps.subprocess, "run",
                      lambda *a, **k: replicate_steps.subprocess.CompletedProcess(a, 0))
  replicate_steps.main_stage("evaluate", str(step), "--config.eval.files=x")
  assert replicate_steps.step_code(str(step)) == "commit 0123abcd"
  # A step stopped and resumed at another commit names both, in the order they ran.
  (step / replicate_steps.DONE).unlink()
  monkeypatch.setattr(replicate_steps.provenance, "current_code_version",
                      lambda: "commit 4567ef01")
  replicate_steps.main_stage("evaluate", str(step), "--config.eval.files=x")
  assert replicate_steps.step_code(str(step)) == "commit 0123abcd, commit 4567ef01"
  # --cached_only reports finished steps and runs none.
  monkeypatch.setattr(replicate_steps, "CACHED_ONLY", True)
  assert replicate_steps.main_stage("evaluate", str(step), "--config.eval.files=x") == str(step)
  with pytest.raises(replicate_steps.NotCached):
    replicate_steps.main_stage("evaluate", str(tmp_path / "other"), "--config.eval.files=x")
  assert not (tmp_path / "other").exists()


def test_a_stage_that_outlasts_the_time_budget_is_stopped_and_resumes(tmp_path, monkeypatch):
  """On a device lease the run has a budget: a running stage is killed at its end and left
  started (its next run resumes it), and no step starts after it."""
  real_run = replicate_steps.subprocess.run
  monkeypatch.setattr(replicate_steps.subprocess, "run", lambda command, **kwargs: real_run(
      [sys.executable, "-c", "import time; time.sleep(60)"], **kwargs))
  monkeypatch.setattr(replicate_steps, "DEADLINE", None)
  replicate_steps.configure(cached_only=False, time_budget_s=1.5)
  step = tmp_path / "step"
  with pytest.raises(replicate_steps.NotCached, match="out of time"):
    replicate_steps.main_stage("evaluate", str(step), "--config.eval.files=x")
  assert (step / replicate_steps.STARTED).exists() and not (step / replicate_steps.DONE).exists()
  with pytest.raises(replicate_steps.NotCached, match="out of time"):
    replicate_steps.main_stage("evaluate", str(tmp_path / "later"), "--config.eval.files=x")
  assert not (tmp_path / "later").exists()
  replicate_steps.configure(cached_only=False, time_budget_s=0)
  assert replicate_steps.seconds_left() is None
  # A stage that fails fails its row, not the run: the caller reports it and goes on.
  monkeypatch.setattr(replicate_steps.subprocess, "run", lambda command, **kwargs: real_run(
      [sys.executable, "-c", "raise SystemExit(3)"], **kwargs))
  with pytest.raises(replicate_steps.StepFailed, match="exited with 3"):
    replicate_steps.main_stage("evaluate", str(tmp_path / "failing"), "--config.eval.files=x")
  assert not (tmp_path / "failing" / replicate_steps.DONE).exists()


def _stage_config(config: str, overrides: list[str]):
  """The config a bench's `main_stage(config, ...)` runs: the stage file with its preset,
  then each --config.field=value override cast to the field's type."""
  import importlib.util
  from gram_jax.config.rules import field_value
  stage, _, preset = config.partition(":")
  spec = importlib.util.spec_from_file_location(
      stage, os.path.join(os.path.dirname(__file__), "..", "..", "configs", f"{stage}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(preset)
  for override in overrides:
    path, value = override.removeprefix("--config.").split("=", 1)
    section, _, name = path.rpartition(".")
    holder = field_value(c, section) if section else c
    old = holder[name]
    holder[name] = (value == "true" if isinstance(old, bool) else type(old)(value))
  return c


@pytest.mark.parametrize("row", list(replicate_gram.GRAM_ROWS) + [replicate_gram.STAGE1])
def test_every_gram_row_trains_with_the_gram_prompt_its_evaluation_reads(row, tmp_path,
                                                                          monkeypatch):
  """The configs the bench runs for each GRAM row resolve to the official GRAM prompt (no
  demo recipe), on the scale's pairs, steps and cutoff; and the card it writes is checked
  against what every evaluation of the row judged with."""
  from gram_jax import judge_card
  from gram_jax.config.template import judge_template
  from gram_jax.text import templates
  scale = replicate_gram.SCALES["cpu"]
  data = {"train": "train.json", "curve": "curve.json", "pairs": 1000}
  ran = []
  monkeypatch.setattr(replicate_gram, "main_stage",
                      lambda config, workdir, *o: ran.append((config, list(o))) or workdir)
  replicate_gram.gram_model(row, str(tmp_path), "/base", data, scale, seed=0)
  for config, overrides in ran:
    c = _stage_config(config, overrides)
    assert judge_template(c) == templates.GRAM_JUDGE_PROMPT or c.stage == "pretrain"
    assert c.data.cutoff_len == scale.cutoff and c.model.lora.rank == scale.lora_rank
    assert c.train.num_steps == 125 and c.data.pack is False
  finetune = _stage_config(*ran[-1])
  assert finetune.data.balanced_steps == (row != "GRAM ε=0.1, per-epoch balance")
  assert finetune.train.global_batch_size == 2 * scale.pairs_per_step
  # The card the row's training writes, checked against its evaluations' summaries.
  judge_card.write_judge_card(str(tmp_path), judge_template(finetune), ("A", "B"),
                              None)
  same = {"in_distribution": {"judge": "prompt gram, labels A/B, the tokenizer's chat "
                                       "template, prompts up to 512 tokens"}}
  assert replicate_gram.check_card_prompt(str(tmp_path), same) == "gram"
  other = {"in_distribution": {"judge": "prompt compact, labels A/B, ..."}}
  with pytest.raises(AssertionError, match="trained with prompt gram, evaluated with compact"):
    replicate_gram.check_card_prompt(str(tmp_path), other)
  with pytest.raises(AssertionError, match="several prompts"):
    replicate_gram.evaluation_prompt({**same, "hhh": other["in_distribution"]})


def test_a_partial_run_prints_its_rows_and_draws_its_curves(tmp_path):
  """A run stopped after some rows still gives a table (the missing cells say so) and the
  learning-curve PNG; each cell is checked against the records it is recomputed from."""
  pairs = lambda flags: {"summary": {"benchmark": "pairs", "accuracy": sum(flags) / len(flags),
                                     "position_consistency": 0.25, "p_first_slot": 0.8,
                                     "trimmed_pairs": 0},
                         "results": [{"correct": f} for f in flags]}
  zero = replicate_report.figures({"in_distribution": pairs([True, False] * 250)})
  trained = replicate_report.figures({"in_distribution": pairs([True] * 300 + [False] * 200)})
  assert trained["in_distribution"] == 0.6 and "mean" not in trained
  low, high = trained["ci"]["in_distribution"]
  assert low < 0.6 < high and high - low < 0.1  # 500 pairs: about ±4.3 points
  with pytest.raises(AssertionError, match="from the records"):
    replicate_report.figures({"in_distribution": {**pairs([True] * 10),
                                                "summary": {"accuracy": 0.5}}})
  results = {0: {"rows": {
      "zero-shot": {**zero, "prompt": "gram"},
      "GRAM ε=0.1": {**trained, "prompt": "gram", "pairs_per_second": 0.17,
                     "curve": [{"step": 0, "accuracy": 0.5, "position_consistency": 0.0,
                                "p_first_slot": 0.85},
                               {"step": 25, "accuracy": 0.56, "position_consistency": 0.3,
                                "p_first_slot": 0.6}]}}}}
  text = replicate_report.table(results, replicate_gram.ROWS, {replicate_gram.BT})
  lines = text.splitlines()
  assert lines[2].startswith("| zero-shot | 50.0 [") and lines[2].endswith("| — | gram |")
  assert lines[3].startswith("| GRAM ε=0.1 | 60.0 [") and "| — | — |" in lines[3]
  assert " 0.17 | gram |" in lines[3]
  pytest.importorskip("matplotlib", reason="the curves need pip install -e '.[replicate]'")
  png = replicate_report.curves_png(results, str(tmp_path / "curves.png"))
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_in_distribution_accuracy_splits_by_source():
  results = [{"prompt": "q1 ", "correct": True}, {"prompt": "q2", "correct": False},
             {"prompt": "q3", "correct": True}]
  split = replicate_report.by_source(results, {"q1": "HH-RLHF", "q2": "RMB", "q3": "RMB"})
  assert split == {"HH-RLHF": [1.0, 1], "RMB": [0.5, 2]}
  table = replicate_report.table({0: {"rows": {"zero-shot": {
      "ci": {}, "in_distribution": 2 / 3, "by_source": split}}}}, ("zero-shot",), set())
  assert table.endswith("In distribution by source (seed 0): zero-shot HH-RLHF 100.0 % (1), "
                        "RMB 50.0 % (2).")


def test_a_sets_interval_does_not_depend_on_the_other_sets_evaluated():
  flags = [i % 10 < 6 for i in range(500)]
  alone = replicate_report.intervals({"in_distribution": _records(flags)}, resamples=300)
  beside = replicate_report.intervals({"in_distribution": _records(flags),
                                       "llmbar": _records(flags[:100])}, resamples=300)
  assert alone["in_distribution"] == beside["in_distribution"]


def test_the_length_check_counts_picks_of_the_longer_response():
  """Four LLMBar pairs by hand: the preferred response is the longer in one (record 1); the
  judge picks the longer in all three that differ in length (1 right; 2 and 3 wrong, where
  the other response is the longer); record 4's responses are of equal length, left out."""
  llmbar = [{"output_1": "long answer", "output_2": "short", "label": 1, "correct": True},
            {"output_1": "brief", "output_2": "a long wrong one", "label": 1, "correct": False},
            {"output_1": "a longer wrong one", "output_2": "ok", "label": 2, "correct": False},
            {"output_1": "same", "output_2": "size", "label": 2, "correct": True}]
  rmb = [{"chosen": {"answer": "yes"}, "reject": {"answer": "no!!"}, "correct": True}]
  shares = replicate_report.length_preference(
      {"llmbar": {"results": llmbar}, "rmb": {"results": rmb}, "hhh": {"results": []}})
  assert shares == {"llmbar": [1.0, 1 / 3, 3], "rmb": [0.0, 0.0, 1]}
  table = replicate_report.table({0: {"rows": {"zero-shot": {"ci": {}, "longer": shares}}}},
                                 ("zero-shot",), set())
  assert table.endswith("Picks the longer response (seed 0, pairs of unequal length): "
                        "zero-shot LLMBar 100.0 %, RMB pairwise 0.0 %. Always picking the "
                        "longer would score LLMBar 33.3 %, RMB pairwise 0.0 %.")
  split = {"HH-RLHF": [0.25, 4], "RMB": [0.75, 4]}
  table = replicate_report.table({0: {"rows": {"zero-shot": {
      "ci": {}, "longer": shares, "longer_by_source": split}}}}, ("zero-shot",), set())
  assert table.endswith("RMB pairwise 0.0 % (in dist. by source: HH-RLHF 25.0 %, RMB 75.0 %).")


def test_accuracy_by_length_splits_pairs_by_whether_the_preferred_is_the_longer():
  """Five held-out pairs by hand: the chosen is the longer in three (two judged right), the
  shorter in one (judged wrong), and of equal length in one (left out)."""
  pairs = [("a long chosen", "no", True), ("a long chosen", "no", True),
           ("a long chosen", "no", False), ("yes", "a long rejected", False),
           ("same", "size", True)]
  evaluated = {"in_distribution": {"results": [
      {"chosen": c, "rejected": r, "correct": ok} for c, r, ok in pairs]}}
  split = replicate_report.accuracy_by_length(evaluated, resamples=200)
  assert split["in_distribution"][:4] == [2 / 3, 3, 0.0, 1]
  low, high = split["in_distribution"][4:]  # the shorter group is one wrong pair: always 0
  assert 0.0 <= low <= 1 / 3 <= high <= 0.5
  table = replicate_report.table({0: {"rows": {"BT": {"ci": {}, "by_length": split}}}},
                                 ("BT",), set())
  assert table.endswith("the longer (3 pairs) / the shorter (1), and their mean (50 % for a "
                        "judge that answers by length alone): BT 66.7 / 0.0 %, mean 33.3 % "
                        f"[{100 * low:.1f}, {100 * high:.1f}].")


def test_a_row_keeps_its_colour_across_seeds_and_panels():
  curve = [{"step": 0, "accuracy": 0.5}]
  results = {0: {"rows": {"zero-shot": {}, "BT": {"curve": curve}, "GRAM": {"curve": curve}}},
             1: {"rows": {"GRAM": {"curve": curve}}}}
  assert replicate_report.row_colours(results) == {"BT": "C0", "GRAM": "C1"}


def test_a_gram_curve_point_carries_the_mean_loss_of_the_ten_steps_up_to_it(tmp_path):
  losses = {step: 0.1 * step for step in range(1, 26)}
  losses[25] = 9.0  # a resumed step logged twice: its last log counts
  with open(tmp_path / "train_metrics.jsonl", "w") as f:
    for step, loss in [*losses.items(), (25, 4.0)]:
      f.write(json.dumps({"step": step, "loss": loss}) + "\n")
  with open(tmp_path / "eval_metrics.jsonl", "w") as f:
    for step in (0, 25):
      f.write(json.dumps({"step": step, "accuracy": 0.5, "position_consistency": 0.25,
                          "p_first_slot": 0.6, **({"answers_by_slot": 1.0} if step else {})})
              + "\n")
  curve = replicate_steps.gram_curve(str(tmp_path))
  assert "train_loss_before" not in curve[0]
  expected = (sum(0.1 * s for s in range(16, 25)) + 4.0) / 10  # steps 16..25
  assert curve[1]["train_loss_before"] == pytest.approx(expected)
  bt_curve = [{"step": 0, "accuracy": 0.5}]
  text = replicate_report.curve_tables({0: {"rows": {"GRAM": {"curve": curve},
                                                     "BT": {"curve": bt_curve}}}})
  assert f"| 25 | 50.0 | 25.0 | 0.600 | yes | {expected:.3f} |" in text
  assert "| 0 | 50.0 | 25.0 | 0.600 | — (start) | — |" in text
  assert "BT (seed 0), held-out curve accuracy by step: 0: 50.0 %." in text


def test_the_peer_s_evaluation_names_the_code_that_ran_it(tmp_path, monkeypatch):
  """The peer evaluates in the recipe's own process (no stage, so no stage marker): the
  code version is noted as its evaluation starts, and a cached evaluation notes nothing."""
  import types
  calls = []

  def evaluate_peer(model, chosen, scale, workdir):
    calls.append(workdir)
    for folder in replicate_gram.evaluate.output_names(list(chosen.values())):
      os.makedirs(os.path.join(workdir, folder), exist_ok=True)
      open(os.path.join(workdir, folder, "summary.json"), "w").write("{}")
    return {k: {} for k in chosen}, {k: [] for k in chosen}

  peer = types.SimpleNamespace(
      trained_result=lambda *a: {"model_dir": "m", "pairs_per_second": 1.0, "curve": [],
                                 "steps": 1, "code": "commit aaaa"},
      evaluate_peer=evaluate_peer)
  monkeypatch.setitem(sys.modules, "bt_peer", peer)
  monkeypatch.setattr(replicate_steps.provenance, "current_code_version",
                      lambda: "commit bbbb")
  data = {"files": {"in_distribution": str(tmp_path / "in_distribution.json")},
          "train": "t", "curve": "c"}
  row = replicate_gram.run_row(replicate_gram.BT, str(tmp_path), "base", data,
                               replicate_gram.SCALES["smoke"], 0, {"in_distribution"})
  assert row["code"] == "commit aaaa"
  assert row["eval_code"] == {"in_distribution": "commit bbbb"}
  monkeypatch.setattr(replicate_steps.provenance, "current_code_version",
                      lambda: "commit cccc")
  row = replicate_gram.run_row(replicate_gram.BT, str(tmp_path), "base", data,
                               replicate_gram.SCALES["smoke"], 0, {"in_distribution"})
  assert row["eval_code"] == {"in_distribution": "commit bbbb"} and len(calls) == 2


def test_length_balanced_pairs_prefer_the_longer_response_in_half_of_each_source():
  """Ten pairs by hand from two sources: in "a" the chosen is the longer in four, the
  shorter in two, equal in one; in "b" the longer in two, the shorter in one. Asking for
  ten gives each source its share of the five pairs per side (3 and 1, the rest to the
  larger, capped by what it has): two of each from "a", one of each from "b", in the
  pool's order."""
  from gram_jax.data.preference import PreferencePair
  shapes = {"a": [("long one", "s"), ("s", "long one"), ("long one", "s"), ("same", "size"),
                  ("long one", "s"), ("s", "long one"), ("long one", "s")],
            "b": [("long one", "s"), ("s", "long one"), ("long one", "s")]}
  pool = [PreferencePair(f"{where}{i}", chosen, rejected, where)
          for where, pairs in shapes.items() for i, (chosen, rejected) in enumerate(pairs)]
  source = lambda pair: pair.where
  balanced = replicate_data.length_balanced(pool, 10, 0, source)
  assert [p.prompt for p in balanced] == [p.prompt for p in pool if p in balanced]
  for where, size in (("a", 4), ("b", 2)):
    mine = [p for p in balanced if p.where == where]
    assert len(mine) == size
    assert sum(len(p.chosen) > len(p.rejected) for p in mine) == size // 2
  assert {"a1", "a5", "b1"} <= {p.prompt for p in balanced}
  assert len(replicate_data.length_balanced(pool, 0, 0, source)) == 6
  assert len(replicate_data.length_balanced(pool, 4, 0, source)) == 4  # "a" gets b's share
  assert replicate_data.longer_preferred(pool) == 6 / 9  # the equal pair left out
  assert replicate_data.longer_preferred(balanced) == 0.5


def test_the_length_rows_train_on_the_length_balanced_pairs(tmp_path, monkeypatch):
  """The length ablation's BT row gets the balanced file and its own folder (the main BT
  row's cache stays where it is)."""
  import types
  trained = []
  peer = types.SimpleNamespace(
      trained_result=lambda *a: trained.append(a) or {
          "model_dir": "m", "pairs_per_second": 1.0, "curve": [], "steps": 1, "code": "c"},
      evaluate_peer=lambda model, chosen, scale, workdir: ({}, {}))
  monkeypatch.setitem(sys.modules, "bt_peer", peer)
  data = {"files": {}, "train": "train.json", "curve": "curve.json",
          "train_length_balanced": "balanced.json",
          "counts": {"train": 10, "train_length_balanced": 8}}
  for name in (replicate_gram.BT, replicate_gram.BT_LENGTH):
    replicate_gram.run_row(name, str(tmp_path), "base", data, replicate_gram.SCALES["smoke"],
                           0, set())
  assert [(a[1], os.path.basename(a[5])) for a in trained] == [
      ("train.json", "bt"), ("balanced.json", "bt_length_balanced_pairs")]
  assert replicate_gram.row_part(replicate_gram.BT_LENGTH) == "length"
  assert replicate_gram.row_part(replicate_gram.GRAM_LENGTH) == "length"
