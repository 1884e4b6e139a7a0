"""bench/replicate_gram.py's data (bench/replicate_data.py): training pairs and evaluation sets are disjoint."""
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


def test_training_pairs_ask_no_evaluation_question(tmp_path):
  if not os.path.isdir(os.path.join(SHARED_DATA, "rmb")):
    pytest.skip(f"benchmark data not present: {SHARED_DATA}/rmb "
                "(the shared data folder; docs/data.md)")
  native = replicate_data.native_eval_sets()
  assert {k: len(v) for k, v in native.items()}["llmbar"] == 100 + 92 + 47 + 46 + 134
  asked = set().union(*map(replicate_data.questions, native.values()))
  scale = replicate_gram.SCALES["full"]
  train = replicate_data.train_set(str(tmp_path), scale, 0, asked)
  rows = json.load(open(train["path"]))
  prompts = {r["prompt"].strip() for r in rows}
  assert train["pairs"] > 8000 and train["dropped_eval_overlap"] > 0
  unlabeled = [r for path in train["unlabeled"] for r in json.load(open(path))]
  assert len(unlabeled) == scale.rounds * scale.unlabeled_pairs
  # No unlabeled pair is a labeled one (in either order).
  labeled = {(r["prompt"], *sorted((r["chosen"], r["rejected"]))) for r in rows}
  assert not labeled & {(u["prompt"], *sorted((u["response_a"], u["response_b"])))
                        for u in unlabeled}
  prompts |= {u["prompt"].strip() for u in unlabeled}
  proofs = json.load(open(replicate_data.seed_proofs(str(tmp_path), asked)))
  assert len(proofs) == 12 and {p["label"] for p in proofs} == {"A", "B"}
  prompts |= {p["prompt"].strip() for p in proofs}
  assert not prompts & asked
  raw = _raw_questions()
  assert len(raw) > 1000 and not prompts & raw


def _records(flags):
  return [{"correct": f, "avg": float(f), "hard": float(f),
           "category_path": f"Pairwise_set/Helpfulness/s{i % 2}"} for i, f in enumerate(flags)]


def test_a_proportions_bootstrap_interval_is_the_normal_one_for_many_records():
  flags = [i % 10 < 7 for i in range(400)]  # 70 % of 400 right
  results = {name: _records(flags) for name in ("llmbar", "hhh", "rmbench", "pandalm", "rmb",
                                                 "rmb_bon")}
  low, high = replicate_gram.intervals(results, resamples=2000)["llmbar"]
  half = 1.96 * (0.7 * 0.3 / 400) ** 0.5  # 0.0449
  assert abs(low - (0.7 - half)) < 0.01 and abs(high - (0.7 + half)) < 0.01
  everything_right = {name: _records([True] * 20) for name in results}
  assert replicate_gram.intervals(everything_right, resamples=200)["mean"] == [1.0, 1.0]


def test_a_cached_step_names_its_inputs_and_code(tmp_path, monkeypatch):
  data = tmp_path / "train.jsonl"
  data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
  key = replicate_gram.fingerprint(["finetune", f"--config.data.train_files={data}"])
  recorded = json.loads(key)
  assert recorded["code"] == replicate_gram.provenance.code_version()
  assert str(data) in recorded["inputs"]
  monkeypatch.setattr(replicate_gram.provenance, "code_version", lambda: "commit 0123abcd")
  assert replicate_gram.fingerprint(["finetune", f"--config.data.train_files={data}"]) != key
  data.write_text('{"prompt": "a", "chosen": "c", "rejected": "b"}\n')
  monkeypatch.undo()
  assert replicate_gram.fingerprint(["finetune", f"--config.data.train_files={data}"]) != key
