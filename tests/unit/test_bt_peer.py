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


def test_the_scalar_peer_is_evaluated_by_the_official_rules(tmp_path):
  tokenizer = hf_fixtures.build_tokenizer()
  config = transformers.LlamaConfig(vocab_size=hf_fixtures.VOCAB, hidden_size=32,
                                    intermediate_size=72, num_hidden_layers=1,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    num_labels=1, pad_token_id=tokenizer.pad_token_id)
  torch.manual_seed(0)
  model = transformers.AutoModelForSequenceClassification.from_config(config)
  judge = bt_peer.ScalarRewardModel(model, tokenizer, max_len=128, batch_size=2)
  path = tmp_path / "pairs.json"
  path.write_text(json.dumps(PAIRS))
  summary = evaluate.evaluate_file(judge, str(path), "auto", str(tmp_path / "out"), {})
  rewards, _ = judge.rewards([(p["prompt"], r) for p in PAIRS for r in (p["chosen"],
                                                                          p["rejected"])])
  expected = np.mean(rewards[0::2] > rewards[1::2])
  assert summary["benchmark"] == "pairs" and summary["accuracy"] == expected
  assert "Bradley–Terry" in summary["judge"] and summary["trimmed_pairs"] == 0
