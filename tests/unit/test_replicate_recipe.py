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
    pytest.skip("shared data not present")
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
