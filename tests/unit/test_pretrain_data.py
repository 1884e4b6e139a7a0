"""Stage-1 data: readers, validation, truncation that keeps the markers, packing, resume."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_jax import GramError
from gram_jax.data import encode, loader, records
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures

OFFICIAL = {
    "instruction": "[User Question]\nWhat is 2 + 2?\n\n",
    "input": "",
    "output": "[The Start of Assistant A's Answer]\n4\n[The End of Assistant A's Answer]\n\n"
              "[The Start of Assistant B's Answer]\n5\n[The End of Assistant B's Answer]",
}


def _write_jsonl(path, rows):
  with open(path, "w") as f:
    for row in rows:
      f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
  return str(path)


def test_official_and_plain_formats(tmp_path):
  plain = {"prompt": "Hi?", "response_a": "Hello.", "response_b": "Go away.", "id": 7}
  jsonl = _write_jsonl(tmp_path / "a.jsonl", [OFFICIAL, plain])
  json_file = tmp_path / "b.json"
  json_file.write_text(json.dumps([OFFICIAL]))
  parquet = str(tmp_path / "c.parquet")
  pq.write_table(pa.Table.from_pylist([plain]), parquet)
  pairs, report = records.read_records([jsonl, str(json_file), parquet],
                                       records.parse_unlabeled_pair)
  assert report.kept == 4
  assert (pairs[0].prompt, pairs[0].response_a, pairs[0].response_b) == ("What is 2 + 2?", "4",
                                                                         "5")
  assert pairs[1].extra == {"id": 7} and pairs[1].where.endswith("a.jsonl:2")
  assert pairs[3].where.endswith("c.parquet[0]")


@pytest.mark.parametrize("row,message", [
    ({"prompt": "q", "response_a": "a"}, "a.jsonl:2: field 'response_b': missing"),
    ({"prompt": "q", "response_a": "", "response_b": "b"}, "field 'response_a': empty"),
    ({"prompt": 3, "response_a": "a", "response_b": "b"}, "field 'prompt': expected a string"),
    ('{"prompt": "q", ', "a.jsonl:2: not valid JSON"),
    ({**OFFICIAL, "output": "no markers"}, "field 'output': does not hold"),
    ([1, 2], "field '<record>': expected a JSON object"),
])
def test_bad_records_fail_with_file_line_field(tmp_path, row, message):
  path = _write_jsonl(tmp_path / "a.jsonl", [OFFICIAL, row])
  with pytest.raises(GramError, match=message.replace("(", r"\(")):
    records.read_records([path], records.parse_unlabeled_pair)
  pairs, report = records.read_records([path], records.parse_unlabeled_pair, on_bad="skip")
  assert len(pairs) == 1 and sum(report.skipped.values()) == 1


def test_non_utf8_line_is_named(tmp_path):
  path = tmp_path / "a.jsonl"
  path.write_bytes(json.dumps(OFFICIAL).encode() + b"\n" + b'{"prompt": "\xff\xfe"}\n')
  with pytest.raises(GramError, match=r"a.jsonl:2: not valid UTF-8"):
    records.read_records([str(path)], records.parse_unlabeled_pair)


def test_missing_file_and_unknown_format(tmp_path):
  with pytest.raises(GramError, match="data file not found"):
    records.read_records([str(tmp_path / "x.jsonl")], records.parse_unlabeled_pair)
  (tmp_path / "x.csv").write_text("a,b")
  with pytest.raises(GramError, match="unknown data format"):
    records.read_records([str(tmp_path / "x.csv")], records.parse_unlabeled_pair)


def test_host_shards_partition_the_records(tmp_path):
  rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(10)]
  path = _write_jsonl(tmp_path / "a.jsonl", rows)
  shards = [records.read_records([path], records.parse_unlabeled_pair, shard=(i, 3))[0]
            for i in range(3)]
  prompts = sorted(p.prompt for shard in shards for p in shard)
  assert prompts == sorted(r["prompt"] for r in rows)


@pytest.fixture(scope="module")
def tokenizer():
  return hf_fixtures.build_tokenizer()


def test_encoding_masks_prompt_and_ends_with_eos(tokenizer):
  pair = records.UnlabeledPair("What is 2 + 2?", "4", "5")
  example = encode.pretrain_encoder(tokenizer, 512)(pair)
  prompt = tokenizer.decode(example.ids[:example.prompt_len])
  reply = tokenizer.decode(example.ids[example.prompt_len:])
  assert prompt == tok.render_user_turn(tokenizer, "[User Question]\nWhat is 2 + 2?\n\n")
  assert reply == templates.fill(templates.PRETRAIN_OUTPUT, "", "4", "5") + "<|im_end|>"


def test_truncation_keeps_closing_markers(tokenizer):
  long = " ".join(["Paris is the capital"] * 200)
  pair = records.UnlabeledPair("What is the capital?", long, long + " extra")
  example = encode.pretrain_encoder(tokenizer, 160)(pair)
  assert len(example.ids) <= 160 and example.trimmed
  reply = tokenizer.decode(example.ids[example.prompt_len:])
  assert reply.endswith("[The End of Assistant B's Answer]<|im_end|>")
  assert "[The End of Assistant A's Answer]" in reply


def test_packing_keeps_segments_apart():
  data = encode.TokenizedSet.build([encode.Example(np.arange(1, 6, dtype=np.int32), 2),
                                    encode.Example(np.arange(10, 14, dtype=np.int32), 1)])
  batch = next(loader.BatchIterator(data, rows=1, seq_len=12, seed=0, pack=True))
  seg, ids, tgt, mask = (batch[k][0, 0] for k in ("segment_ids", "input_ids", "targets",
                                                  "target_mask"))
  assert sorted(set(seg.tolist())) == [0, 1, 2]
  boundary = int(np.argmax(seg == 2)) - 1  # last token of segment 1 predicts nothing
  assert mask[boundary] == 0 and tgt[boundary] == 0
  assert batch["positions"][0, 0, boundary + 1] == 0
  assert mask.sum() == (5 - 2) + (4 - 1)


def test_skip_replays_to_the_same_position():
  data = encode.TokenizedSet.build([encode.Example(np.ones(n, np.int32), 1)
                                    for n in np.random.RandomState(0).randint(3, 30, 50)])
  built = loader.BatchIterator(data, rows=3, seq_len=40, micro_batches=2, seed=5)
  for _ in range(7):
    next(built)
  replayed = loader.BatchIterator(data, rows=3, seq_len=40, micro_batches=2, seed=5)
  replayed.skip(7)
  assert replayed.state() == built.state() and built.epoch >= 1  # crossed an epoch
  np.testing.assert_array_equal(next(replayed)["input_ids"], next(built)["input_ids"])


def test_shuffle_is_deterministic_and_seeded():
  data = encode.TokenizedSet.build([encode.Example(np.full(4, i, np.int32), 1)
                                    for i in range(1, 30)])
  first = lambda seed: next(loader.BatchIterator(data, 4, 4, seed=seed, pack=False))[
      "input_ids"][0, :, 0].tolist()
  assert first(1) == first(1) and first(1) != first(2)
