"""Released judges read as released: a cardless GRAM-RR checkpoint is a reasoning judge under
the release protocol, a GRAM verdict judge reads prompts uncut up to its context unless
capped, and every best-of-n entry point defaults to the official linear scan."""
import json
import os
from unittest import mock

import pytest

from gram_jax import judge_card
from gram_jax.errors import GramError
from gram_jax.inference import ranking
from gram_jax.inference.reward import RewardModel
from gram_jax.serving.request_parsing import Limits, parse_rank_request
from gram_jax.stages import common
from gram_jax.text import templates
from tests.helpers import hf_fixtures
from tests.unit.test_config_rules import stage_config

# The front matter of the released GRAM-RR model cards, and of a GRAM (verdict) one.
RR_CARD = """---
license: apache-2.0
language:
- en
base_model:
- meta-llama/Llama-3.2-3B-Instruct
pipeline_tag: text-generation
tags:
- Reward
- RewardModel
- RewardReasoning
- Reasoning
---

### Introduction
"""
GRAM_CARD = RR_CARD.replace("- RewardReasoning\n- Reasoning\n", "")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("cardless"))
  hf_fixtures.make_hf_model("llama3_tied", path, with_tokenizer=True)
  return path


def _copy(model_dir: str, to: str, readme: str | None = None, name_or_path: str = "") -> str:
  os.makedirs(to)
  for name in os.listdir(model_dir):
    with open(os.path.join(model_dir, name), "rb") as f, \
        open(os.path.join(to, name), "wb") as out:
      out.write(f.read())
  if readme is not None:
    with open(os.path.join(to, "README.md"), "w") as f:
      f.write(readme)
  if name_or_path:
    config_path = os.path.join(to, "config.json")
    config = json.load(open(config_path))
    config["_name_or_path"] = name_or_path
    json.dump(config, open(config_path, "w"))
  return to


def test_a_released_reasoning_judge_is_recognised_by_its_files(model_dir, tmp_path):
  tagged = _copy(model_dir, str(tmp_path / "tagged"), RR_CARD)
  assert "tagged RewardReasoning" in judge_card.released_reasoning_judge(tagged)
  named = _copy(model_dir, str(tmp_path / "named"),
                name_or_path="wangclnlp/GRAM-RR-LLaMA-3.2-3B-RewardModel")
  assert "_name_or_path" in judge_card.released_reasoning_judge(named)
  by_path = _copy(model_dir, str(tmp_path / "models--wangclnlp--GRAM-RR-LLaMA-3.1-8B"))
  assert "path names GRAM-RR" in judge_card.released_reasoning_judge(by_path)
  verdict = _copy(model_dir, str(tmp_path / "gram"), GRAM_CARD,
                  name_or_path="NiuTrans/GRAM-Qwen3-8B-RewardModel")
  assert judge_card.released_reasoning_judge(verdict) is None
  assert judge_card.read_judge_card(verdict) == {}


def test_a_cardless_released_judge_reads_as_released(model_dir, tmp_path):
  path = _copy(model_dir, str(tmp_path / "rr"), RR_CARD)
  reward = RewardModel.from_pretrained(path)
  assert reward.reasoning == judge_card.RELEASE
  assert reward.encoder.template == templates.GRAM_RR_PROMPT
  assert reward.max_len == judge_card.RELEASE.prompt_len() == 6144
  # A caller that names a verdict judge gets one, with the GRAM prompt.
  verdict = RewardModel.from_pretrained(path, reasoning=None)
  assert verdict.reasoning is None and verdict.encoder.template == templates.GRAM_JUDGE_PROMPT
  # A card, once written, is what the model is.
  judge_card.write_judge_card(path, templates.GRAM_JUDGE_PROMPT, ("A", "B"), None)
  assert RewardModel.from_pretrained(path).reasoning is None


def test_stages_read_it_as_released_unless_told_otherwise(model_dir, tmp_path):
  path = _copy(model_dir, str(tmp_path / "rr"), RR_CARD)
  c = stage_config("evaluate")
  c.model.path = path
  with mock.patch.object(judge_card.logging, "info") as logged:
    reward = common.reward_model(c, None, c.eval.max_len, 4)
  assert reward.reasoning == judge_card.RELEASE
  # The stage reads the card once: the "read as released" line is logged once.
  assert sum("released GRAM-RR" in str(call.args[0]) for call in logged.call_args_list) == 1
  c.reasoning.votes = 16
  assert common.reward_model(c, None, 0, 4).reasoning.votes == 16  # voting@16 on top
  c.reasoning.votes, c.reasoning.mode = 0, "off"
  assert common.reward_model(c, None, 0, 4).reasoning is None
  c.reasoning.mode, c.template.judge = "auto", "gram"
  with pytest.raises(judge_card.GramError, match="a released GRAM-RR judge: its model card"):
    common.reward_model(c, None, 0, 4)


def test_a_verdict_judge_reads_prompts_uncut_up_to_its_context(model_dir, tmp_path):
  long_context = _copy(model_dir, str(tmp_path / "long"))
  config_path = os.path.join(long_context, "config.json")
  config = json.load(open(config_path))
  config["max_position_embeddings"] = 40960
  json.dump(config, open(config_path, "w"))
  assert RewardModel.from_pretrained(long_context).max_len == 40960
  assert RewardModel.from_pretrained(long_context, max_len=1024).max_len == 1024
  assert RewardModel.from_pretrained(model_dir).max_len == 2048  # a 256-position toy: 2,048
  c = stage_config("evaluate")
  c.model.path = long_context
  assert common.reward_model(c, None, c.eval.max_len, 4).max_len == 40960
  # The server compiles every length bucket before it listens: 2,048 unless it is told more.
  assert common.reward_model(c, None, 0, 4, judge_card.DEFAULT_PROMPT_LEN).max_len == 2048


def test_every_best_of_n_entry_point_defaults_to_the_official_linear_scan(model_dir):
  assert stage_config("best_of_n").best_of_n.method == "linear"
  assert parse_rank_request({"prompt": "q", "responses": ["a", "b", "c"]}, Limits())[2] == \
      "linear"
  calls = []

  def compare(triples):
    calls.append([t[1:] for t in triples])
    return [[0.4, 0.6] if b > a else [0.6, 0.4] for _, a, b in triples]
  result = ranking.rank("q", ["a", "c", "b", "d"], compare)
  # The scan: the current best against each next response, one at a time (n - 1 calls).
  assert calls == [[("a", "c")], [("c", "b")], [("c", "d")]]
  assert result.best == 3 and result.comparisons == 3
  reward = RewardModel.from_pretrained(model_dir, batch_size=2)
  responses = ["Paris.", "The answer is 4.", "Paris is the capital."]
  assert reward.rank("Capital?", responses) == reward.rank("Capital?", responses, "linear")
