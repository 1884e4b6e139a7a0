"""The replication table's peer (bench/bt_peer.py) is scored by the evaluate stage as
gram_jax's judges are: its scalar adapter offers what evaluate reads of a RewardModel, and
a pair is right when the chosen response's reward is higher."""
import json
import os
import sys

import numpy as np
import torch
import transformers

from gram_jax.stages import evaluate
from tests.helpers import hf_fixtures

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import bt_peer  # noqa: E402

PAIRS = [{"prompt": "2 + 2?", "chosen": "4.", "rejected": "5."},
         {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome, I think."},
         {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}]


def _scalar_model():
  tokenizer = hf_fixtures.build_tokenizer()
  config = transformers.LlamaConfig(vocab_size=hf_fixtures.VOCAB, hidden_size=32,
                                    intermediate_size=72, num_hidden_layers=1,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    num_labels=1, pad_token_id=tokenizer.pad_token_id)
  torch.manual_seed(0)
  return transformers.AutoModelForSequenceClassification.from_config(config), tokenizer


def test_the_scalar_peer_is_evaluated_by_the_official_rules(tmp_path):
  model, tokenizer = _scalar_model()
  judge = bt_peer.ScalarRewardModel(model, tokenizer, max_len=128, batch_size=2)
  path = tmp_path / "pairs.json"
  path.write_text(json.dumps(PAIRS))
  summary = evaluate.evaluate_file(judge, str(path), "auto", str(tmp_path / "out"), {})
  rewards, _ = judge.rewards([(p["prompt"], r) for p in PAIRS for r in (p["chosen"],
                                                                          p["rejected"])])
  expected = np.mean(rewards[0::2] > rewards[1::2])
  assert summary["benchmark"] == "pairs" and summary["accuracy"] == expected
  assert "Bradley–Terry" in summary["judge"] and summary["trimmed_pairs"] == 0


def test_a_resumed_peer_keeps_its_learning_curve_and_measures_each_step_once(tmp_path):
  """The peer trains for an hour on 2 cores with no checkpoint of gram_jax's kind: it saves
  one every curve point and a resumed run reads its curve back."""
  model, tokenizer = _scalar_model()
  path = str(tmp_path / "curve.jsonl")
  first = bt_peer.LearningCurve(PAIRS, tokenizer, 128, 2, every=25, path=path)
  state = transformers.TrainerState(global_step=0, max_steps=100)
  first.on_train_begin(None, state, None, model=model)
  state.global_step = 25
  first.on_step_end(None, state, None, model=model)
  resumed = bt_peer.LearningCurve(PAIRS, tokenizer, 128, 2, every=25, path=path)
  assert [p["step"] for p in resumed.points] == [0, 25]
  resumed.on_train_begin(None, state, None, model=model)  # where it picks up: no new point
  state.global_step = 50
  resumed.on_step_end(None, state, None, model=model)
  assert [p["step"] for p in resumed.points] == [0, 25, 50]
  assert [json.loads(line)["step"] for line in open(path)] == [0, 25, 50]
