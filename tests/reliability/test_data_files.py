"""Data files are read or named, never dropped or misread without a word: case-insensitive
formats, .parquet.gz, hidden and AppleDouble files ignored, other files named in the log,
duplicate JSON keys refused, and a per-record byte cap that names the line."""
import gzip
import io
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_jax import GramError
from gram_jax.data import preference, records, sources

ROW = {"prompt": "q", "chosen": "good", "rejected": "bad"}


def _read(path, on_bad="fail"):
  return records.read_records([str(path)], preference.parse_preference_pair, on_bad)


def test_a_folder_reads_every_data_file_and_names_the_rest(tmp_path, caplog):
  folder = tmp_path / "set"
  (folder / ".hidden").mkdir(parents=True)
  (folder / "A.JSONL").write_text(json.dumps(ROW) + "\n")
  (folder / "b.Json.GZ").write_bytes(gzip.compress(json.dumps([ROW]).encode()))
  (folder / "._A.JSONL").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
  (folder / ".hidden" / "x.jsonl").write_text(json.dumps(ROW) + "\n")
  (folder / "c.csv").write_text("prompt,chosen,rejected\n")
  (folder / "d.jsonl.bz2").write_bytes(b"BZh9")
  with caplog.at_level(logging.WARNING):
    kept, _ = _read(folder)
  assert len(kept) == 2
  assert f"{folder}: read 2 data files; not read: 2 of another format (c.csv, d.jsonl.bz2); " \
         "2 hidden" in caplog.text


def test_a_gzipped_parquet_file_is_read(tmp_path):
  buffer = io.BytesIO()
  pq.write_table(pa.Table.from_pylist([ROW, ROW]), buffer)
  path = tmp_path / "pairs.parquet.gz"
  path.write_bytes(gzip.compress(buffer.getvalue()))
  kept, _ = _read(path)
  assert [p.chosen for p in kept] == ["good", "good"]


def test_a_key_given_twice_is_an_error_not_the_last_value(tmp_path):
  lines = tmp_path / "pairs.jsonl"
  lines.write_text(json.dumps(ROW) + "\n" +
                   '{"prompt": "q", "chosen": "good", "chosen": "bad", "rejected": "x"}\n')
  with pytest.raises(GramError, match=r"pairs\.jsonl:2: the key 'chosen' is given twice in "
                                      "one object"):
    _read(lines)
  kept, report = _read(lines, "skip")
  assert len(kept) == 1 and sum(report.skipped.values()) == 1
  array = tmp_path / "pairs.json"
  array.write_text('[{"prompt": "q", "prompt": "p", "chosen": "a", "rejected": "b"}]')
  with pytest.raises(GramError, match=r"pairs\.json: the key 'prompt' is given twice"):
    _read(array)


def test_a_record_over_the_byte_cap_names_its_line_and_the_rest_is_read(tmp_path,
                                                                       monkeypatch):
  monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 200)
  path = tmp_path / "pairs.jsonl.gz"
  long_row = {**ROW, "chosen": "x" * 1000}
  path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in (ROW, long_row, ROW))
                                 .encode() + b"\n"))
  with pytest.raises(GramError, match=r"pairs\.jsonl\.gz:2: longer than 200 bytes "
                                      r"\(sources\.MAX_RECORD_BYTES\), not read"):
    _read(path)
  kept, report = _read(path, "skip")
  assert len(kept) == 2 and sum(report.skipped.values()) == 1


def test_a_whole_file_format_is_read_no_further_than_its_bound(tmp_path, monkeypatch):
  """A small .json.gz that decompresses past MAX_WHOLE_FILE_BYTES (one 4 MB file passed
  6 GB) is refused naming the bound, before it is held whole."""
  monkeypatch.setattr(sources, "MAX_WHOLE_FILE_BYTES", 1 << 20)
  bomb = tmp_path / "pairs.json.gz"
  bomb.write_bytes(gzip.compress(b"[" + b" " * (8 << 20) + b"]"))
  assert bomb.stat().st_size < 20_000
  with pytest.raises(GramError, match=r"pairs.json.gz: more than 1,048,576 bytes decompressed "
                     r"\(sources.MAX_WHOLE_FILE_BYTES\), not read whole"):
    _read(bomb)


def test_parquet_is_read_a_batch_at_a_time(tmp_path):
  """A few hundred bytes of run-length codes stand for millions of rows (a 946-byte file
  read whole peaked at 2.9 GB): the first record arrives with one batch decoded."""
  path = tmp_path / "many.parquet"
  rows = pa.Table.from_pydict({"prompt": pa.array(["q"] * 2_000_000).dictionary_encode(),
                               "chosen": ["good"] * 2_000_000, "rejected": ["bad"] * 2_000_000})
  pq.write_table(rows, path, row_group_size=2_000_000)
  rows = sources.iter_rows(str(path))
  first = next(rows)
  assert first.data == ROW and first.where == f"{path}[0]"
  assert pa.total_allocated_bytes() < 20 << 20  # the whole table decoded is ~50 MB
  rows.close()


def test_deep_nesting_is_one_bad_record_that_skip_counts(tmp_path):
  lines = tmp_path / "pairs.jsonl"
  lines.write_text(json.dumps(ROW) + "\n" + "[" * 200_000 + "]" * 200_000 + "\n" +
                   json.dumps(ROW) + "\n")
  kept, report = _read(lines, "skip")
  assert len(kept) == 2 and report.skipped == {"not valid JSON (nested too deeply)": 1}
  with pytest.raises(GramError, match=r"pairs.jsonl:2: not valid JSON \(nested too deeply\)"):
    _read(lines)
  whole = tmp_path / "pairs.json"
  whole.write_text("[" * 200_000 + "]" * 200_000)
  with pytest.raises(GramError, match=r"pairs.json: not valid JSON \(nested too deeply\)"):
    _read(whole)
