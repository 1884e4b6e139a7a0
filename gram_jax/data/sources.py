"""Raw rows from JSON / JSONL / Parquet files (local, gs://, s3://), `datasets.load_dataset`
or TFDS.

Each row comes with where it came from (`file:line` or `file[index]`), so every later error
can name its source. Malformed bytes or JSON become SourceError; the reader decides whether
to skip and count it or stop.
"""
import contextlib
import dataclasses
import gzip
import io
import json
import os
import zlib
from typing import IO, Any, Callable, Iterator

from absl import logging

from gram_jax import storage
from gram_jax.errors import GramError

HF_PREFIX = "hf://"
TFDS_PREFIX = "tfds://"


@dataclasses.dataclass(frozen=True)
class Row:
  where: str
  data: Any  # dict for valid rows


class SourceError(GramError):
  """A row that could not be decoded; `where` names it."""

  def __init__(self, where: str, reason: str):
    super().__init__(f"{where}: {reason}")
    self.where = where
    self.reason = reason


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz", ".parquet.gz")
# One JSONL line (one record) at most: a longer one is an error naming file and line, read
# no further than this, rather than a process the OOM killer ends without a word.
MAX_RECORD_BYTES = 64 << 20
# A whole-file format (.json, a gzipped .parquet) at most, as read or decompressed: a 4 MB
# .json.gz once decompressed past 6 GB. Larger sets belong in .jsonl or Parquet, read a
# record or a batch at a time.
MAX_WHOLE_FILE_BYTES = 1 << 30
PARQUET_BATCH_ROWS = 1024


def check_exists(path: str) -> None:
  if not path.startswith((HF_PREFIX, TFDS_PREFIX)) and not storage.exists(path):
    raise GramError(f"{path}: data file not found")


def is_data_file(name: str) -> bool:
  return name.lower().endswith(DATA_SUFFIXES)


def folder_files(path: str) -> list[str]:
  """The data files under a folder, in sorted path order (a benchmark shipped as a tree of
  files, e.g. RMB's Pairwise_set, reads as one source). Hidden files and folders (macOS's
  `._*` included) are ignored; every other file that is not read is named in the log."""
  found, other, hidden = [], [], 0
  for name in storage.walk_files(path):
    relative = os.path.relpath(name, path) if not storage.is_remote(path) else \
        name[len(path.rstrip("/")) + 1:]
    if any(part.startswith(".") for part in relative.split("/")):
      hidden += 1
    elif is_data_file(name):
      found.append(name)
    else:
      other.append(relative)
  if other or hidden:
    shown = ", ".join(other[:10]) + (f" and {len(other) - 10} more" if len(other) > 10 else "")
    logging.warning("%s: read %d data files; not read: %s%s", path, len(found),
                    f"{len(other)} of another format ({shown})" if other else "",
                    f"{'; ' if other else ''}{hidden} hidden" if hidden else "")
  if not found:
    raise GramError(f"{path}: no data files ({', '.join(DATA_SUFFIXES)}) in this folder")
  return found


def _bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
  """Lines of a binary stream read in 1 MiB blocks (any file object: local, gzip, fsspec);
  None in place of a line longer than `limit`, whose bytes are dropped as they come."""
  buffer, skipping = b"", False
  while block := stream.read(1 << 20):
    buffer += block
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
      line, start = buffer[start:end + 1], end + 1
      if skipping or len(line) > limit:
        yield None
        skipping = False
      else:
        yield line
    buffer = buffer[start:]
    if len(buffer) > limit:
      buffer, skipping = b"", True
  if skipping or len(buffer) > limit:
    yield None
  elif buffer:
    yield buffer


def _compressed_lines(path: str) -> Iterator[bytes | None]:
  """Lines of a file, gunzipped for .gz; None for a line over MAX_RECORD_BYTES (skipped, never
  held whole); a corrupt or cut gzip stream is a named error."""
  number = 0
  try:
    with storage.open_file(path, "rb") as f:
      stream = gzip.GzipFile(fileobj=f, mode="rb") if path.lower().endswith(".gz") else f
      for number, raw in enumerate(_bounded_lines(stream, MAX_RECORD_BYTES), start=1):
        yield raw
  except (OSError, EOFError, zlib.error) as e:
    raise GramError(f"{path}: not a readable gzip file after line {number} ({e})") from None


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
  """The field holding a lone UTF-16 surrogate (an unpaired JSON '\\ud83d' escape), which is
  not text and which no tokenizer encodes; None when every string is text."""
  if isinstance(value, str):
    try:
      value.encode("utf-8")
    except UnicodeEncodeError:
      return path or "<record>"
    return None
  items = value.items() if isinstance(value, dict) else enumerate(value) \
      if isinstance(value, list) else ()
  for key, item in items:
    inner = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
    found = lone_surrogate_field(item, inner)
    if found:
      return found
  return None


def _may_escape_surrogates(text: str) -> bool:
  return "\\ud" in text or "\\uD" in text


def _decoded(where: str, data: Any, escapes: bool) -> Row:
  """A decoded JSON record, or the error naming the field a lone surrogate broke (looked for
  only where the source text has a surrogate escape)."""
  try:
    field = lone_surrogate_field(data) if escapes else None
  except RecursionError:
    return Row(where, SourceError(where, "nested too deeply"))
  if field:
    return Row(where, SourceError(where, f"field '{field}': holds a lone UTF-16 surrogate (an "
                                         "unpaired \\ud800-\\udfff escape), which is not text"))
  return Row(where, data)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
  """A JSON object, refusing a key given twice (which value is meant is not known)."""
  data = dict(pairs)
  if len(data) != len(pairs):
    seen = set()
    twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    raise ValueError(f"the key {twice!r} is given twice in one object")
  return data


def _jsonl_rows(path: str) -> Iterator[Row]:
  for number, raw in enumerate(_compressed_lines(path), start=1):
    where = f"{path}:{number}"
    if raw is None:
      yield Row(where, SourceError(where, f"longer than {MAX_RECORD_BYTES:,} bytes "
                                          "(sources.MAX_RECORD_BYTES), not read"))
      continue
    if not raw.strip():
      continue
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      yield Row(where, SourceError(where, f"not valid UTF-8 ({e.reason} at byte {e.start})"))
      continue
    try:
      data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
      yield Row(where, SourceError(where, f"not valid JSON ({e.msg})"))
      continue
    except RecursionError:  # one bad record, skippable like any other
      yield Row(where, SourceError(where, "not valid JSON (nested too deeply)"))
      continue
    except ValueError as e:
      yield Row(where, SourceError(where, str(e)))
      continue
    yield _decoded(where, data, _may_escape_surrogates(text))


def _whole_file(path: str) -> bytes:
  """A file's bytes, gunzipped for .gz, read in 16 MiB blocks up to MAX_WHOLE_FILE_BYTES."""
  with storage.open_file(path, "rb") as f:
    stream = gzip.GzipFile(fileobj=f, mode="rb") if path.lower().endswith(".gz") else f
    blocks, size = [], 0
    while block := stream.read(16 << 20):
      size += len(block)
      if size > MAX_WHOLE_FILE_BYTES:
        raise GramError(f"{path}: more than {MAX_WHOLE_FILE_BYTES:,} bytes"
                        f"{' decompressed' if stream is not f else ''} "
                        "(sources.MAX_WHOLE_FILE_BYTES), not read whole; write it as .jsonl "
                        "(a record a line) or Parquet")
      blocks.append(block)
  return b"".join(blocks)


def _json_rows(path: str) -> Iterator[Row]:
  try:
    text = _whole_file(path).decode("utf-8")
    data = json.loads(text, object_pairs_hook=_unique_keys)
  except RecursionError:
    raise GramError(f"{path}: not valid JSON (nested too deeply)") from None
  except (OSError, EOFError, zlib.error) as e:
    raise GramError(f"{path}: not a readable file ({e})") from None
  except UnicodeDecodeError as e:
    raise GramError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
  except json.JSONDecodeError as e:
    raise GramError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
  except ValueError as e:
    raise GramError(f"{path}: {e}") from None
  if isinstance(data, dict):
    data = next((v for v in data.values() if isinstance(v, list)), None)
  if not isinstance(data, list):
    raise GramError(f"{path}: expected a JSON array of records")
  escapes = _may_escape_surrogates(text)
  for index, item in enumerate(data):
    yield _decoded(f"{path}[{index}]", item, escapes)


def _parquet_rows(path: str) -> Iterator[Row]:
  """Rows a batch at a time (a 946-byte file read whole once peaked at 2.9 GB: a few bytes of
  run-length codes can stand for millions of rows)."""
  import pyarrow.parquet as pq
  index = 0
  try:
    with contextlib.ExitStack() as stack:
      source = (io.BytesIO(_whole_file(path)) if path.lower().endswith(".gz") else
                stack.enter_context(storage.open_file(path, "rb")))
      for batch in pq.ParquetFile(source).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for item in batch.to_pylist():
          yield Row(f"{path}[{index}]", item)
          index += 1
  except GramError:
    raise
  except Exception as e:  # pyarrow raises many types for corrupt files
    raise GramError(f"{path}: not a readable Parquet file after row {index} "
                    f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _hub_rows(spec: str) -> Iterator[Row]:
  """hf://NAME[:CONFIG]@SPLIT or hf://NAME@SPLIT, through datasets.load_dataset."""
  import datasets
  name, _, split = spec[len(HF_PREFIX):].partition("@")
  name, _, config = name.partition(":")
  dataset = datasets.load_dataset(name, config or None, split=split or "train")
  for index, item in enumerate(dataset):
    yield Row(f"{spec}[{index}]", item)


def _tfds_rows(spec: str) -> Iterator[Row]:
  """tfds://NAME[/CONFIG][:VERSION]@SPLIT from an already prepared TFDS data source.

  Random-access `tfds.data_source` (ArrayRecord files under $TFDS_DATA_DIR, no TensorFlow
  needed); nothing is downloaded: an unprepared dataset is an error that says so.
  """
  import tensorflow_datasets as tfds
  name, _, split = spec[len(TFDS_PREFIX):].partition("@")
  data_dir = os.environ.get("TFDS_DATA_DIR") or None
  try:
    source = tfds.data_source(name, split=split or "train", data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types for unknown / unprepared datasets
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise GramError(f"{spec}: no prepared TFDS data source ({first_line}); prepare it with "
                    "`tfds build` into $TFDS_DATA_DIR with file_format=array_record") from None
  for index in range(len(source)):
    where = f"{spec}[{index}]"
    try:
      yield Row(where, _plain(source[index]))
    except UnicodeDecodeError as e:
      yield Row(where, SourceError(where, f"text feature is not valid UTF-8 ({e.reason})"))


def _plain(value: Any) -> Any:
  """TFDS features as JSON-like values: bytes -> str, numpy -> Python."""
  import numpy as np
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return [_plain(v) for v in value] if value.ndim else _plain(value.item())
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def parse_row(row: Row, parse: Callable[[Any, str], Any]) -> Any:
  """`parse(data, where)` of a decoded row; a row that could not be decoded raises its
  error (naming the file and row)."""
  if isinstance(row.data, Exception):
    raise row.data
  return parse(row.data, row.where)


def parse_rows(path: str, parse: Callable[[Any, str], Any]) -> list[Any]:
  """Every row of one source, parsed; the first bad one raises, naming its file, row and
  field."""
  return [parse_row(row, parse) for row in iter_rows(path)]


def iter_rows(path: str) -> Iterator[Row]:
  """Rows of one source (a file, or every data file under a folder); the format follows the
  file extension."""
  if path.startswith(HF_PREFIX):
    yield from _hub_rows(path)
    return
  if path.startswith(TFDS_PREFIX):
    yield from _tfds_rows(path)
    return
  check_exists(path)
  if storage.isdir(path):
    for name in folder_files(path):
      yield from iter_rows(name)
    return
  name = (path[:-3] if path.lower().endswith(".gz") else path).lower()
  if name.endswith(".jsonl"):
    yield from _jsonl_rows(path)
  elif name.endswith(".json"):
    yield from _json_rows(path)
  elif name.endswith(".parquet"):
    yield from _parquet_rows(path)
  else:
    raise GramError(f"{path}: unknown data format (expected .jsonl, .json, .parquet, "
                    "optionally .gz, hf://dataset@split or tfds://name@split)")
