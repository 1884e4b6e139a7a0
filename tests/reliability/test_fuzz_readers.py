"""Property-based fuzzing of every reader: JSONL, JSON, Parquet (each also gzipped) and the
record parsers behind them. Whatever the bytes, the outcome is a validated record or a
GramError naming the file and record — never another exception, never a wrong record."""
import gzip
import io
import json
import os
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings, strategies as st

from gram_jax.data import preference, rationales, records
from gram_jax.errors import GramError

FIELDS = ("prompt", "chosen", "rejected", "response_a", "response_b", "response_A",
          "response_B", "label", "rationale", "question", "instruction", "output", "input",
          "subset", "source")
PARSERS = {"unlabeled": records.parse_unlabeled_pair,
           "preference": preference.parse_preference_pair,
           "proved": rationales.parse_proved_pair}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

texts = st.one_of(
    st.text(max_size=40), st.just(""), st.just("   \n"), st.sampled_from(("A", "B", "C", " A ")),
    st.just("\n\nHuman: hi\n\nAssistant: hello"), st.just("x" * (records.MAX_FIELD_CHARS + 1)),
    st.just("[User Question]\nq\n[The Start of Assistant A's Answer]\na\n"
            "[The End of Assistant A's Answer]\n[The Start of Assistant B's Answer]\nb\n"
            "[The End of Assistant B's Answer]"))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(("role", "content")) | st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
rows = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=7),
    st.fixed_dictionaries({k: texts for k in ("prompt", "chosen", "rejected")}),
    st.fixed_dictionaries({k: texts for k in ("prompt", "response_a", "response_b", "label",
                                              "rationale")}),
    values)


def _text_fields(record) -> list:
  return [v for k, v in vars(record).items() if k not in ("where", "extra")]


def _check_parse(kind: str, row, where: str):
  """The property every parser keeps; returns the record or None (a named error)."""
  try:
    record = PARSERS[kind](row, where)
  except GramError as e:
    assert str(e).startswith(f"{where}: "), str(e)
    return None
  for value in _text_fields(record):
    assert isinstance(value, str) and value.strip() and \
        len(value) <= records.MAX_FIELD_CHARS + 10_000
  plain = {"unlabeled": ("prompt", "response_a", "response_b"),
           "preference": ("prompt", "chosen", "rejected")}.get(kind)
  if plain and set(plain) <= set(row) and not {"instruction", "output", "response_A",
                                                "label"} & set(row):
    if all(isinstance(row[k], str) for k in plain) and "\n\nHuman:" not in str(row["chosen"]):
      assert _text_fields(record)[:3] == [row[k] for k in plain]  # nothing silently altered
  return record


@FUZZ
@given(kind=st.sampled_from(sorted(PARSERS)), row=rows)
def test_parsers_return_a_valid_record_or_name_the_record(kind, row):
  _check_parse(kind, row, "data.jsonl:7")


lines = st.one_of(
    rows.map(lambda r: json.dumps(r).encode()),
    rows.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-16")),
    rows.map(lambda r: json.dumps(r, ensure_ascii=False).encode("latin-1", "replace")),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    rows.map(lambda r: json.dumps(r).encode()[:-3]),  # cut short
    st.just(b""), st.just(b"   "))


def _read(path: str, kind: str, on_bad: str):
  try:
    return records.read_records([path], PARSERS[kind], on_bad)
  except GramError as e:
    assert str(e).startswith(path), str(e)
    return None


@FUZZ
@given(kind=st.sampled_from(sorted(PARSERS)), body=st.lists(lines, max_size=8),
       gz=st.booleans(), on_bad=st.sampled_from(("fail", "skip")))
def test_jsonl_files_of_any_bytes(kind, body, gz, on_bad):
  data = b"\n".join(l.replace(b"\n", b" ") for l in body)
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "data.jsonl" + (".gz" if gz else ""))
    with open(path, "wb") as f:
      f.write(gzip.compress(data) if gz else data)
    result = _read(path, kind, on_bad)
    if result is None:
      assert on_bad == "fail"
      return
    got, report = result
    expected = []
    for number, line in enumerate(data.split(b"\n"), start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line.decode("utf-8"))
      except ValueError:
        continue
      record = _check_parse(kind, row, f"{path}:{number}")
      if record is not None:
        expected.append(record)
    assert got == expected  # exactly the valid lines, each parsed as on its own
    assert report.kept + sum(report.skipped.values()) == sum(1 for l in data.split(b"\n")
                                                             if l.strip())


@FUZZ
@given(kind=st.sampled_from(sorted(PARSERS)), suffix=st.sampled_from(
    (".json", ".json.gz", ".parquet", ".jsonl.gz")), junk=st.binary(max_size=200))
def test_random_bytes_in_any_format_are_a_named_error(kind, suffix, junk):
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "data" + suffix)
    with open(path, "wb") as f:
      f.write(junk)
    for on_bad in ("fail", "skip"):
      _read(path, kind, on_bad)


@FUZZ
@given(kind=st.sampled_from(sorted(PARSERS)), table=st.lists(rows, max_size=6),
       as_parquet=st.booleans())
def test_json_and_parquet_tables_of_any_records(kind, table, as_parquet):
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "data.parquet" if as_parquet else "data.json")
    if as_parquet:
      sink = io.BytesIO()
      try:
        pq.write_table(pa.Table.from_pylist([r for r in table if isinstance(r, dict)]), sink)
      except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return  # not representable as a Parquet table (e.g. an int beyond 64 bits)
      with open(path, "wb") as f:
        f.write(sink.getvalue())
    else:
      with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f)
    _read(path, kind, "skip")
    _read(path, kind, "fail")
