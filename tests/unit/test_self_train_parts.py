"""Pieces of self-training: resumable sub-steps, the built-in data's disjoint splits, the
baseline's gold labels, the judged-row record and the round's counts."""
import dataclasses
import importlib.util
import json
import os

import pytest

from gram_jax import GramError, pseudo_labels
from gram_jax.data import rationales, synthetic
from gram_jax.data.preference import PreferencePair
from gram_jax.data.records import RecordError, UnlabeledPair
from gram_jax.inference.reasoning import Judgment, PairJudgment
from gram_jax.judge_card import read_judge_card
from gram_jax.stages import recipes, self_train_files, self_train_job
from gram_jax.text import templates
from tests.helpers import hf_fixtures
from tests.helpers.cli import ROOT


def _config(tmp_path, preset=""):
  spec = importlib.util.spec_from_file_location(
      "self_train_config", os.path.join(ROOT, "configs", "self_train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(preset)
  c.workdir = str(tmp_path)
  return c


def test_once_runs_a_sub_step_a_single_time(tmp_path):
  calls = []
  make = lambda: calls.append(1) or {"value": len(calls)}
  path = str(tmp_path / "round_1" / "labels.json")
  assert self_train_files.once(path, make) == {"value": 1}
  assert self_train_files.once(path, make) == {"value": 1} and len(calls) == 1
  assert not os.path.exists(path + ".tmp")


def _keys(path, fields):
  return [synthetic.pair_key(*(row[f] for f in fields)) for row in map(json.loads, open(path))]


def test_builtin_heldout_shares_no_pair_with_any_training_side_set(tmp_path):
  c = _config(tmp_path)
  files = self_train_files.data_files(c)
  labeled = ("prompt", "chosen", "rejected")
  pair = ("prompt", "response_a", "response_b")
  heldout = _keys(files["heldout"][0], labeled)
  assert len(heldout) == len(set(heldout)) == c.self_train.heldout_pairs
  training = {"seed": _keys(files["seed"][0], pair), "labeled": _keys(files["labeled"][0], labeled),
              "task": _keys(files["task"][0], labeled)}
  for r, path in enumerate(files["unlabeled"], start=1):
    training[f"unlabeled_{r}"] = _keys(path, pair)
  seen = set()
  for name, keys in training.items():
    assert not set(keys) & set(heldout), f"{name} shares pairs with the held-out split"
    assert not set(keys) & seen, f"{name} shares pairs with another training-side split"
    seen |= set(keys)
  unlabeled = [json.loads(l) for l in open(files["unlabeled"][0])]
  assert {"A", "B"} == {r["gold"] for r in unlabeled}  # gold kept aside, both positions
  seeds = [json.loads(l) for l in open(files["seed"][0])]
  assert all(f"Response {r['label']} is better." in r["rationale"] for r in seeds)


def test_the_baseline_gets_every_gold_label_the_reasoning_side_uses(tmp_path):
  c = _config(tmp_path)
  job = self_train_job.SelfTrainJob(c)
  gold = [json.loads(l) for l in open(job.gold_file())]
  seeds = [json.loads(l) for l in open(job.files["seed"][0])]
  labeled = [json.loads(l) for l in open(job.files["labeled"][0])]
  expected = [(s["prompt"], s["response_a"] if s["label"] == "A" else s["response_b"],
               s["response_b"] if s["label"] == "A" else s["response_a"]) for s in seeds]
  task = [json.loads(l) for l in open(job.files["task"][0])]
  expected += [(p["prompt"], p["chosen"], p["rejected"]) for p in labeled + task]
  assert [(g["prompt"], g["chosen"], g["rejected"]) for g in gold] == expected
  assert len(gold) == c.self_train.seed_pairs + c.self_train.labeled_pairs + \
      c.self_train.task_pairs


def test_real_model_presets_run_three_rounds(tmp_path):
  c = _config(tmp_path, "llama3.2-3b")
  assert c.self_train.rounds == 3 and c.self_train.judge_samples >= 3
  assert c.self_train.judge_temperature > 0


def _judgment(swapped, verdict, p=0.9):
  reply = f"<think>\nResponse {verdict} is right.\n</think>\n<answer>\n{verdict}\n</answer>"
  return Judgment(swapped, reply, f"Response {verdict} is right.", verdict,
                  (p, 1 - p) if verdict == "A" else (1 - p, p))


def test_a_judged_row_records_votes_problems_and_the_reason_it_was_dropped(tmp_path):
  job = self_train_job.SelfTrainJob(_config(tmp_path))
  pair = UnlabeledPair("q", "a", "b", extra={"gold": "A"})
  # Order 1 says A, A, B; order 2 (swapped) says B, B (= the pair's A) and one broken reply.
  judged = PairJudgment((_judgment(False, "A"), _judgment(False, "A"), _judgment(False, "B"),
                         _judgment(True, "B"), _judgment(True, "B"),
                         Judgment(True, "no answer", "", None, (0.5, 0.5))))
  rules = pseudo_labels.LabelRules(job.labels, job.c.template.rationale_format,
                                job.s.max_rationale_chars, job.s.min_vote_share, 0.7)
  row = pseudo_labels.judged_row(pair, judged, rules)
  assert row["votes"] == [4, 1] and row["abstained"] == 1 and row["label"] == "A"
  assert [j["problem"] for j in row["judgments"]] == [None] * 5 + ["no_verdict"]
  assert row["vote_share"] == pytest.approx(0.8)
  # P(response_a) of the five valid judgments: 0.9, 0.9, 0.1, 0.9, 0.9 -> 0.74.
  assert row["confidence"] == pytest.approx(0.74) and row["drop_reason"] is None
  stricter = dataclasses.replace(rules, min_confidence=0.8)
  assert pseudo_labels.judged_row(pair, judged, stricter)["drop_reason"] == "low_confidence"


def test_round_stats_count_each_reason():
  rows = [{"drop_reason": None, "label": "A", "gold": "A", "trimmed": True,
           "judgments": [{"problem": None}, {"problem": "contradiction"}]},
          {"drop_reason": None, "label": "B", "gold": "A", "judgments": [{"problem": None}]},
          {"drop_reason": "tie", "label": None, "gold": "B",
           "judgments": [{"problem": "no_verdict"}, {"problem": "no_verdict"}]},
          {"drop_reason": "low_confidence", "label": "A", "gold": "A", "judgments": []}]
  stats = pseudo_labels.round_stats(rows)
  assert stats["judged"] == 4 and stats["kept"] == 2 and stats["judgments"] == 5
  assert stats["drop_reasons"] == {"no_valid_judgment": 0, "tie": 1, "split_vote": 0,
                                   "low_confidence": 1}
  assert stats["judgment_problems"] == {"no_verdict": 2, "broken_format": 0,
                                        "missing_rationale": 0, "too_long": 0,
                                        "contradiction": 1, "omits_label": 0}
  assert stats["kept_agree_gold"] == 0.5 and stats["judge_prompts_trimmed"] == 1


def test_one_chat_template_serves_training_labeling_and_evaluation(tmp_path):
  chat = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
          "{% if add_generation_prompt %}[assistant] {% endif %}")
  c = _config(tmp_path)
  c.tokenizer.chat_template = chat
  job = self_train_job.SelfTrainJob(c)
  policy = str(tmp_path / "policy")
  hf_fixtures.make_hf_model("qwen3", policy, vocab=len(job.tokenizer))
  judge = job.policy_judge(policy)  # labels the pools and measures each round
  assert judge.prompts.chat_template == chat and judge.scorer.encoder.chat_template == chat
  assert judge.prompts.text("q", "a", "b").startswith("[user] ")
  recipes.record_judge(c, policy, recipes.policy_reasoning(c, 8))  # what readers will use
  card = read_judge_card(policy)
  assert card["chat_template"] == chat and card["reasoning"].rationale_format == "answer_tag"
  assert card["template"] == templates.COMPACT_RR_PROMPT


def test_task_adaptation_refuses_the_labeled_set():
  labeled = [PreferencePair("q", "a", "b"), PreferencePair("r", "c", "d")]
  with pytest.raises(GramError, match="every task pair is a labeled_files pair"):
    pseudo_labels.check_task_set([PreferencePair("q", "b", "a")], labeled)  # either order
  pseudo_labels.check_task_set([PreferencePair("q", "a", "b"), PreferencePair("s", "e", "f")],
                               labeled)


def test_task_rows_with_their_own_rationale_are_targets_as_written():
  own = rationales.parse_task_pair({"prompt": "q", "response_a": "x", "response_b": "y",
                                    "label": "B", "feedback": "Response B is right."}, "t:1")
  assert own.proved.rationale == "Response B is right." and own.proved.label == "B"
  assert (own.pair.chosen, own.pair.rejected) == ("y", "x")
  plain = rationales.parse_task_pair({"prompt": "q", "chosen": "x", "rejected": "y"}, "t:2")
  assert plain.proved is None and plain.pair.chosen == "x"
  with pytest.raises(RecordError, match="t:3: field 'rationale'"):
    rationales.parse_task_pair({"prompt": "q", "response_a": "x", "response_b": "y",
                                "label": "A"}, "t:3")
