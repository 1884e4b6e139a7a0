"""Journals, the resume point of long generation and scoring loops: a file cut at any byte
yields exactly its whole lines (a torn last line is never data, and is cut off before the
next append); another work's journal is set aside; chunks resume after the last whole row;
on object storage (an emulator) a journal is one object per chunk."""
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from gram_jax import preemption
from gram_jax.errors import GramError
from gram_jax.journal import Journal, jsonl_text, run_in_chunks
from gram_jax.storage import write_atomic

HEADER = {"file": "pool.jsonl", "model": "m"}
rows = st.lists(st.fixed_dictionaries({"i": st.integers(), "text": st.text(max_size=30)}),
                max_size=6)


@settings(max_examples=200, deadline=None)
@given(rows=rows, cut=st.floats(0, 1))
def test_a_journal_cut_at_any_byte_reads_as_its_whole_lines(tmp_path_factory, rows, cut):
  path = str(tmp_path_factory.mktemp("j") / "work.journal")
  full = jsonl_text([{"journal": HEADER}] + rows).encode()
  end = int(cut * len(full))
  with open(path, "wb") as f:
    f.write(full[:end])
  journal = Journal(path, HEADER)
  whole = full[:end].count(b"\n") - 1  # lines after the header that were written whole
  assert journal.read() == rows[:max(whole, 0)]
  journal.append([{"i": -1, "text": "next"}])  # the torn tail is gone before appending
  assert journal.read()[-1] == {"i": -1, "text": "next"}


def test_a_journal_of_other_work_is_set_aside(tmp_path):
  path = str(tmp_path / "work.journal")
  Journal(path, {"model": "old"}).append([{"i": 0}])
  assert Journal(path, HEADER).read() == []
  assert os.path.exists(path + ".stale") and not os.path.exists(path)


def test_a_corrupt_whole_line_is_an_error_naming_the_line(tmp_path):
  path = str(tmp_path / "work.journal")
  with open(path, "w") as f:
    f.write(json.dumps({"journal": HEADER}) + "\n{\"i\": 0}\nnot json\n")
  with pytest.raises(GramError, match=r"work.journal:3: corrupt journal line"):
    Journal(path, HEADER).read()


def test_chunks_resume_after_the_last_finished_item(tmp_path):
  path = str(tmp_path / "work.journal")
  calls = []

  def work(chunk, first):
    calls.append(first)
    return [{"i": i} for i in chunk]

  Journal(path, HEADER).append([{"i": 0}, {"i": 1}, {"i": 2}])
  done = run_in_chunks(list(range(10)), work, Journal(path, HEADER), chunk_size=4)
  assert done == [{"i": i} for i in range(10)] and calls == [3, 7]


def test_a_stop_request_ends_after_the_chunk_in_flight(tmp_path, monkeypatch):
  monkeypatch.setattr(preemption._WATCH, "requested", True)
  path = str(tmp_path / "work.journal")
  with pytest.raises(preemption.Preempted, match="4 of 10 items saved"):
    run_in_chunks(list(range(10)), lambda c, f: [{"i": i} for i in c], Journal(path, HEADER), 4)
  assert Journal(path, HEADER).read() == [{"i": i} for i in range(4)]


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path):
  path = str(tmp_path / "summary.json")
  write_atomic(path, "old")
  with pytest.raises(GramError, match="summary.json: cannot write"):
    write_atomic(path, "\ud800")  # cannot be encoded: the write fails part-way
  assert open(path).read() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_on_object_storage_a_journal_is_one_object_per_chunk(gcs):
  path = f"{gcs.bucket()}/run/work.journal"
  journal = Journal(path, HEADER)
  assert journal.read() == []
  journal.append([{"i": 0}, {"i": 1}])
  journal.append([{"i": 2}])
  assert [name.rsplit("/", 1)[1] for name in gcs.objects(path + "/")] == [
      "00000000.jsonl", "00000001.jsonl"]
  assert Journal(path, HEADER).read() == [{"i": 0}, {"i": 1}, {"i": 2}]
  assert Journal(path, {"model": "other"}).read() == []  # set aside, chunk by chunk
  assert gcs.objects(path + "/") == [] and len(gcs.objects(path + ".stale/")) == 2
  Journal(path, HEADER).append([{"i": 5}])
  Journal(path, HEADER).remove()
  assert gcs.objects(path + "/") == []

