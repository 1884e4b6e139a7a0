"""Labeled-pair readers: every supported shape, bad input named by file/line/field, real data."""
import gzip
import json

import pytest
import tensorflow_datasets as tfds

from gram_jax import GramError
from gram_jax.data import preference, records
from gram_jax.text import templates
from tests.conftest import shared_data

PLAIN = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "subset": "chat"}


def _read(tmp_path, rows, name="p.jsonl", on_bad="fail"):
  path = tmp_path / name
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return records.read_records([str(path)], preference.parse_preference_pair, on_bad=on_bad)


def test_every_supported_shape(tmp_path):
  gram_row = {"instruction": templates.fill(templates.GRAM_JUDGE_PROMPT, "Q?", "bad", "good"),
              "input": "", "output": "B"}
  judgebench = {"question": "Q?", "response_A": "x", "response_B": "y", "label": "B>A",
                "source": "livebench-math", "pair_id": 3}
  messages = {"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant",
                                                              "content": "good"}],
              "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant",
                                                                "content": "bad"}]}
  hh = {"chosen": "\n\nHuman: Q?\n\nAssistant: good", "rejected": "\n\nHuman: Q?\n\nAssistant: bad"}
  pairs, report = _read(tmp_path, [PLAIN, gram_row, judgebench, messages, hh])
  assert report.kept == 5
  assert pairs[0].extra == {"subset": "chat"}
  assert (pairs[1].prompt, pairs[1].chosen, pairs[1].rejected) == ("Q?", "good", "bad")
  assert (pairs[2].chosen, pairs[2].rejected, pairs[2].extra["source"]) == ("y", "x",
                                                                            "livebench-math")
  assert (pairs[3].prompt, pairs[3].chosen) == ("Q?", "good")
  assert (pairs[4].prompt, pairs[4].chosen, pairs[4].rejected) == ("Q?", "good", "bad")


def test_multi_turn_context_is_kept():
  row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: Sure.",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: No."}
  pair = preference.parse_preference_pair(row, "x:1")
  assert pair.prompt == "Human: Hi\n\nAssistant: Hello\n\nHuman: Joke?"
  assert (pair.chosen, pair.rejected) == ("Sure.", "No.")


@pytest.mark.parametrize("row,message", [
    ({"prompt": "q", "rejected": "r"}, "p.jsonl:2: field 'chosen': missing"),
    ({"prompt": "q", "chosen": "  ", "rejected": "r"}, "field 'chosen': empty"),
    ({"question": "q", "response_A": "a", "response_B": "b", "label": "A=B"}, "field 'label'"),
    ({"instruction": "no blocks", "output": "A"}, "field 'instruction'"),
    ({"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "user",
                                                                   "content": "q"}]},
     "must end with a non-empty assistant message"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"},
     "does not share the chosen transcript"),
    ("[1, 2", "p.jsonl:2: not valid JSON"),
])
def test_bad_rows_are_named_or_counted(tmp_path, row, message):
  with pytest.raises(GramError, match=message.replace("(", r"\(")):
    _read(tmp_path, [PLAIN, row])
  pairs, report = _read(tmp_path, [PLAIN, row, PLAIN], on_bad="skip")
  assert len(pairs) == 2 and sum(report.skipped.values()) == 1
  assert "p.jsonl:2" in report.summary()


def test_non_utf8_and_not_json_files(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_bytes(json.dumps(PLAIN).encode() + b"\n\xff\xfe\xfd\n")
  with pytest.raises(GramError, match=r"p.jsonl:2: not valid UTF-8"):
    records.read_records([str(path)], preference.parse_preference_pair)
  bad = tmp_path / "p.json"
  bad.write_text("this is not json")
  with pytest.raises(GramError, match=r"p.json: not valid JSON"):
    records.read_records([str(bad)], preference.parse_preference_pair)


def test_local_dataset_directory_through_datasets(tmp_path):
  folder = tmp_path / "ds"
  folder.mkdir()
  (folder / "train.jsonl").write_text(json.dumps(PLAIN) + "\n")
  pairs, _ = records.read_records([f"hf://{folder}@train"], preference.parse_preference_pair)
  assert pairs[0].chosen == "Hello!" and pairs[0].where.startswith("hf://")


class TinyPreferencePairs(tfds.core.GeneratorBasedBuilder):
  """A local TFDS dataset with RewardBench-style fields, one of them bad (empty chosen)."""
  VERSION = tfds.core.Version("1.0.0")
  ROWS = [PLAIN, {**PLAIN, "prompt": "Qué hora es?"}, {**PLAIN, "chosen": ""}]

  def _info(self):
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"prompt": text, "chosen": text, "rejected": text, "subset": text}))

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples()}

  def _generate_examples(self):
    yield from enumerate(self.ROWS)


def test_tfds_data_source(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  TinyPreferencePairs(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  spec = "tfds://tiny_preference_pairs@test"
  pairs, report = records.read_records([spec], preference.parse_preference_pair, on_bad="skip")
  assert sorted(p.prompt for p in pairs) == ["Hi?", "Qué hora es?"]  # TFDS shuffles keys
  assert pairs[0].extra["subset"] == "chat" and sum(report.skipped.values()) == 1
  with pytest.raises(GramError, match=r"tfds://tiny_preference_pairs@test\[\d\].*chosen"):
    records.read_records([spec], preference.parse_preference_pair)
  with pytest.raises(GramError, match="tfds://no_such_pairs@test: no prepared TFDS data source"):
    records.read_records(["tfds://no_such_pairs@test"], preference.parse_preference_pair)


def test_real_hh_rlhf_file():
  path = shared_data("hh-rlhf", "harmless-base-test.jsonl.gz")
  pairs, report = records.read_records([path], preference.parse_preference_pair, on_bad="skip")
  with gzip.open(path, "rt") as f:
    total = sum(1 for _ in f)
  assert report.kept + sum(report.skipped.values()) == total == 2312
  assert report.kept > 2200
  assert all(p.prompt and p.chosen and p.rejected for p in pairs)
  single = [p for p in pairs if "\n\nAssistant:" not in p.prompt]
  assert single and not any(p.prompt.startswith("Human:") for p in single)
  assert pairs[0].prompt.startswith("Human: ") and "\n\nAssistant: " in pairs[0].prompt


def test_real_rmbench_file_fields():
  path = shared_data("rm-bench", "chat_filtered.json")
  rows = json.load(open(path))
  assert len(rows) == 129 and all(len(r["chosen"]) == 3 for r in rows)


def test_a_bad_row_in_fail_mode_says_how_to_skip_such_rows(tmp_path):
  path = tmp_path / "hh.jsonl"
  path.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                              "rejected": "\n\nHuman: hi\n\nAssistant:"}) + "\n")
  with pytest.raises(GramError) as error:
    records.read_records([str(path)], preference.parse_preference_pair)
  assert str(error.value).startswith(f"{path}:1: field 'rejected': ")
  assert str(error.value).endswith("to skip and count such rows instead: "
                                   "--config.data.on_bad_record=skip")


def test_llmbar_rows_read_as_pairs_and_a_bad_label_is_named(tmp_path):
  rows = [{"input": "Q1", "output_1": "good", "output_2": "bad", "label": 1},
          {"input": "Q2", "output_1": "bad", "output_2": "good", "label": 2}]
  pairs, _ = _read(tmp_path, rows)
  assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Q1", "good", "bad"),
                                                              ("Q2", "good", "bad")]
  with pytest.raises(GramError, match=r"p.jsonl:1: field 'label': expected 1 or 2, got 0"):
    _read(tmp_path, [{**rows[0], "label": 0}])


def test_the_shared_llmbar_file_reads_whole():
  path = shared_data("llmbar", "LLMBar", "Natural", "dataset.json")
  pairs, report = records.read_records([path], preference.parse_preference_pair)
  raw = json.load(open(path))
  assert len(pairs) == 100 and report.kept == 100
  first = raw[0]
  better = first["output_1"] if first["label"] == 1 else first["output_2"]
  assert pairs[0].prompt == first["input"] and pairs[0].chosen == better
