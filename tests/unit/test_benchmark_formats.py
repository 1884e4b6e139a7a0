"""The shared benchmark sets in their native formats: PandaLM, RMB pairwise and best-of-n,
HHH as packaged by prometheus-eval; folders read as one source; the published groupings."""
import gzip
import json
import os

import numpy as np
import pytest

from gram_jax.data import benchmarks, preference, records, sources
from gram_jax.errors import GramError
from tests.conftest import shared_data


def _pandalm_row(votes, response1="one", response2="two", extra_input=""):
  return {"idx": 7, "cmp_key": "x_y", "instruction": "Rewrite it.", "input": extra_input,
          "response1": response1, "response2": response2,
          **{f"annotator{i + 1}": v for i, v in enumerate(votes)}}


@pytest.mark.parametrize("votes, label", [((1, 1, 1), 1), ((2, 2, 1), 2), ((0, 1, 1), 1),
                                          ((0, 0, 2), 0), ((0, 0, 0), 0), ((0, 1, 2), 0)])
def test_pandalm_gold_is_the_annotators_majority(votes, label):
  assert preference.pandalm_label(_pandalm_row(votes), "p") == label


def test_pandalm_pairs_question_and_ties():
  pair = preference.parse_preference_pair(_pandalm_row((2, 2, 0), extra_input="Some text."),
                                          "p[0]")
  assert (pair.prompt, pair.chosen, pair.rejected) == ("Rewrite it.\nSome text.", "two", "one")
  assert preference.parse_preference_pair(_pandalm_row((1, 1, 1)), "p").prompt == "Rewrite it."
  with pytest.raises(GramError, match=r"p\[1\]: field 'annotator1': the annotators' majority "
                     "is a tie"):
    preference.parse_preference_pair(_pandalm_row((0, 0, 1)), "p[1]")
  with pytest.raises(GramError, match=r"p: field 'annotator3': expected 0, 1 or 2, got 3"):
    preference.parse_preference_pair(_pandalm_row((1, 1, 3)), "p")


def _turn(role, content):
  return {"role": role, "content": content, "language": "English"}


def test_rmb_pairs_keep_the_whole_conversation():
  row = {"pair_uid": "9", "category_path": "Pairwise_set/Harmlessness/multi",
         "conversation_input": [_turn("user", "Hi"), _turn("assistant", "Hello"),
                                _turn("user", "Help me")],
         "chosen": {"llm_name": "m1", "answer": "Sure"},
         "reject": {"llm_name": "m2", "answer": "No"}}
  pair = preference.parse_preference_pair(row, "f[0]")
  assert pair.prompt == "User: Hi\n\nAssistant: Hello\n\nUser: Help me"
  assert (pair.chosen, pair.rejected) == ("Sure", "No")
  assert pair.extra["category_path"] == "Pairwise_set/Harmlessness/multi"
  single = {**row, "conversation_input": [_turn("user", "Help me")]}
  assert preference.parse_preference_pair(single, "f").prompt == "Help me"
  with pytest.raises(GramError, match="f: field 'conversation_input': must end with the user"):
    preference.parse_preference_pair({**row, "conversation_input": [_turn("user", "a"),
                                                                    _turn("assistant", "b")]},
                                     "f")
  with pytest.raises(GramError, match="f: field 'reject': expected {llm_name, answer}"):
    preference.parse_preference_pair({**row, "reject": "No"}, "f")


def test_rmb_best_of_n_groups():
  row = {"bon_uid": "3", "category_path": "BoN_set/Helpfulness/Chat/Discussion",
         "conversation_input": [_turn("user", "Q")], "bon_best": {"answer": "best"},
         "loser_list": [{"answer": "l1"}, {"answer": "l2"}]}
  group = preference.parse_best_of_n(row, "b[0]")
  assert (group.prompt, group.best, group.losers) == ("Q", "best", ("l1", "l2"))
  with pytest.raises(GramError, match=r"b\[0\]: field 'loser_list\[1\]': field 'answer': "
                     "expected a string, got int"):
    preference.parse_best_of_n({**row, "loser_list": [{"answer": "l1"}, {"answer": 3}]},
                               "b[0]")
  with pytest.raises(GramError, match="a best-of-n group, not a pair"):
    preference.parse_preference_pair(row, "b[0]")


def _grading_prompt(question, response):
  return (f"###Task Description:\nGrade it.\n\n###The instruction to evaluate:\n{question}\n\n"
          f"###Response to evaluate:\n{response}\n\n###Score Rubrics:\n[Is it harmless?]")


def test_hhh_as_packaged_by_prometheus():
  row = {"source": "honest", "chosen_instruction": _grading_prompt("Q?\n\nMore.", "Good."),
         "rejected_instruction": _grading_prompt("Q?\n\nMore.", "Bad.\n\nReally.")}
  pair = preference.parse_preference_pair(row, "h[0]")
  assert (pair.prompt, pair.chosen, pair.rejected) == ("Q?\n\nMore.", "Good.", "Bad.\n\nReally.")
  assert pair.extra == {"source": "honest"}
  with pytest.raises(GramError, match="field 'rejected_instruction': asks another question"):
    preference.parse_preference_pair({**row, "rejected_instruction": _grading_prompt("Z", "x")},
                                     "h")
  with pytest.raises(GramError, match="field 'chosen_instruction': does not hold"):
    preference.parse_preference_pair({**row, "chosen_instruction": "Grade: Good."}, "h")


def test_labeled_rows_become_unlabeled_pairs_without_their_label():
  rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
  pairs = [preference.parse_unlabeled(row, f"f:{i}") for i, row in enumerate(rows)]
  assert all({p.response_a, p.response_b} == {f"good {i}", f"bad {i}"}
             for i, p in enumerate(pairs))
  firsts = sum(p.response_a.startswith("good") for p in pairs)
  assert 0 < firsts < 40  # the better response is not always A
  plain = preference.parse_unlabeled({"prompt": "q", "response_a": "x", "response_b": "y"}, "f")
  assert (plain.response_a, plain.response_b) == ("x", "y")


def test_a_folder_reads_as_one_source_in_path_order(tmp_path):
  (tmp_path / "b" / "z").mkdir(parents=True)
  (tmp_path / "a.json").write_text(json.dumps([{"n": 1}, {"n": 2}]))
  with gzip.open(tmp_path / "b" / "z" / "c d.json.gz", "wt") as f:
    json.dump([{"n": 3}], f)
  (tmp_path / "b" / "notes.txt").write_text("not data")
  rows = list(sources.iter_rows(str(tmp_path)))
  assert [r.data["n"] for r in rows] == [1, 2, 3]
  assert rows[2].where == f"{tmp_path}/b/z/c d.json.gz[0]"
  (tmp_path / "empty").mkdir()
  with pytest.raises(GramError, match="empty: no data files"):
    list(sources.iter_rows(str(tmp_path / "empty")))


def test_rmb_scoring_averages_subsets_within_a_goal_then_goals():
  flags = ([("Pairwise_set/Helpfulness/Chat/A", ok) for ok in (1, 1, 1, 0)] +
           [("Pairwise_set/Helpfulness/Code/B", ok) for ok in (1, 0)] +
           [("Pairwise_set/Harmlessness/S1", ok) for ok in (0, 0, 0, 0, 1)])
  summary = benchmarks.rmb.summary("rmb", flags)
  # Written out: Helpfulness = (3/4 + 1/2) / 2, Harmlessness = 1/5.
  assert summary["groups"] == {"Harmlessness": pytest.approx(0.2),
                               "Helpfulness": pytest.approx(0.625)}
  assert summary["overall"] == pytest.approx((0.625 + 0.2) / 2)
  assert summary["items"] == 11 and summary["subsets"]["Pairwise_set/Helpfulness/Code/B"] == 0.5
  assert "overall (mean of goals)" in benchmarks.markdown("rmb", {**summary, "trimmed_pairs": 0})


def test_hhh_and_pandalm_summaries():
  summary = benchmarks.hhh.summary([("honest", True), ("honest", False), ("harmless", True)])
  assert summary["groups"] == {"harmless": 1.0, "honest": 0.5}
  assert summary["overall"] == pytest.approx(2 / 3)
  summary = benchmarks.pandalm.summary([(True, True), (False, True), (True, False)], ties=4)
  assert (summary["pairs"], summary["unanimous_pairs"], summary["ties_excluded"]) == (3, 2, 4)
  assert summary["accuracy"] == pytest.approx(2 / 3) and summary["unanimous_accuracy"] == 0.5
  assert "ties excluded" in benchmarks.markdown("pandalm", {**summary, "trimmed_pairs": 0})


def test_the_shared_pandalm_file():
  path = shared_data("pandalm", "testset-v1.json")
  pairs, report = records.read_records([path], preference.parse_preference_pair, on_bad="skip")
  # Its README: 999 comparisons; the majority is a tie for (0,0,0) x 85, (0,0,2) x 13 and
  # (0,0,1) x 7.
  assert report.kept == 999 - 105 and report.skipped == {"annotator1": 105}
  raw = json.load(open(path))
  # Annotated as they were: empty outputs, and outputs 'True' stored as JSON booleans.
  by_idx = {p.extra["idx"]: p for p in pairs}
  assert (by_idx[158].chosen, by_idx[158].rejected) == ("True", "The statement is correct.")
  assert by_idx[466].prompt == "Truthfulness"  # instruction ' ', input 'Truthfulness'
  assert any(not p.chosen.strip() or not p.rejected.strip() for p in pairs)
  first = raw[0]
  assert pairs[0].prompt == f"{first['instruction']}\n{first['input']}"
  assert pairs[0].chosen == first["response2"]  # annotators (2, 2, 2)


def test_the_shared_rmb_folders():
  pairwise = shared_data("rmb", "Pairwise_set")
  pairs, _ = records.read_records([pairwise], preference.parse_preference_pair)
  assert len(pairs) == 8456 + 6087  # its README's counts
  paths = {p.extra["category_path"] for p in pairs}
  assert len(paths) == 35 + 11
  bon = [preference.parse_best_of_n(r.data, r.where)
         for r in sources.iter_rows(shared_data("rmb", "BoN_set"))]
  assert len(bon) == 2109 + 1677 and all(2 <= len(g.losers) <= 6 for g in bon)
  assert os.path.basename(bon[0].where).startswith("S1.json.gz")


def test_the_shared_hhh_file():
  path = shared_data("hhh-alignment", "hhh_alignment_eval.json")
  pairs, _ = records.read_records([path], preference.parse_preference_pair)
  sources_count = {s: sum(p.extra["source"] == s for p in pairs)
                   for s in ("honest", "helpful", "harmless", "other")}
  assert sources_count == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
  assert pairs[0].prompt.startswith("Can you tell me what kind of knife")
  assert pairs[0].chosen.startswith("Sorry, I'm not interested in helping you with that.")
  assert not any("###" in p.chosen or "###" in p.prompt for p in pairs)
  assert np.mean([p.chosen != p.rejected for p in pairs]) == 1.0
