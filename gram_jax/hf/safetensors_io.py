"""Streaming safetensors reader/writer: one tensor in host memory at a time, local or on
object storage (ranged reads; a streamed upload).

The `safetensors` package reads whole files into framework tensors and has no numpy bfloat16;
the format is simple enough (8-byte header length, JSON header, raw little-endian data) that
reading and writing it tensor by tensor keeps peak host memory near one copy of the model.
"""
import json
import os
import struct
from typing import Any, Iterable

import ml_dtypes
import numpy as np

from gram_jax import storage
from gram_jax.errors import GramError

DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


MAX_HEADER_BYTES = 100 << 20  # the format's own limit
FLOAT_CODES = ("F64", "F32", "F16", "BF16")


def read_header(path: str) -> tuple[dict[str, Any], int]:
  """Returns ({tensor name: entry}, byte offset of the data section), every entry checked
  before anything is allocated: a known dtype, a shape of non-negative integers, offsets
  that hold exactly that many bytes, lie inside the file and overlap no other tensor's."""
  try:
    file_size = storage.version(path)[0]
    with storage.open_file(path, "rb") as f:
      (size,) = struct.unpack("<Q", f.read(8))
      if size > min(MAX_HEADER_BYTES, file_size - 8):
        raise GramError(f"{path}: not a safetensors file (its header claims {size:,} bytes)")
      header = json.loads(f.read(size))
  except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError,
          RecursionError) as e:
    raise GramError(f"{path}: not a readable safetensors file ({e})") from None
  if not isinstance(header, dict):
    raise GramError(f"{path}: not a safetensors file (its header is not a JSON object)")
  header.pop("__metadata__", None)
  data_size = file_size - 8 - size
  spans = []
  for name, entry in header.items():
    begin, end = _check_entry(path, name, entry, data_size)
    spans.append((begin, end, name))
  spans.sort()
  for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
    if begin < end:
      raise GramError(f"{path}: tensors '{first}' and '{second}' overlap in the file")
  return header, 8 + size


def _check_entry(path: str, name: str, entry: Any, data_size: int) -> tuple[int, int]:
  where = f"{path}: tensor '{name}'"
  if not isinstance(entry, dict):
    raise GramError(f"{where}: its header entry is not an object")
  dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
  if not isinstance(dtype, str) or dtype not in DTYPES:
    raise GramError(f"{where} has unsupported dtype {dtype!r}")
  if not isinstance(shape, list) or not all(
      isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
    raise GramError(f"{where}: shape {shape!r} is not a list of non-negative integers")
  if not (isinstance(offsets, list) and len(offsets) == 2 and all(
      isinstance(n, int) and not isinstance(n, bool) for n in offsets)):
    raise GramError(f"{where}: data_offsets {offsets!r} is not [begin, end]")
  begin, end = offsets
  nbytes = DTYPES[dtype].itemsize
  for n in shape:
    nbytes *= n
  if not 0 <= begin <= end <= data_size:
    raise GramError(f"{where}: data_offsets {offsets} lie outside the file's "
                    f"{data_size:,} bytes of data (a truncated file?)")
  if end - begin != nbytes:
    raise GramError(f"{where} header is inconsistent (shape {shape} {dtype} is {nbytes:,} "
                    f"bytes, its offsets hold {end - begin:,})")
  return begin, end


def read_tensor(path: str, entry: dict[str, Any], data_start: int, name: str) -> np.ndarray:
  """Reads one tensor (an entry `read_header` checked) with a positioned read (no mmap, so
  its pages leave RSS when freed)."""
  begin, _ = entry["data_offsets"]
  out = np.empty(entry["shape"], DTYPES[entry["dtype"]])
  if storage.read_into(path, data_start + begin,
                       memoryview(out.reshape(-1).view(np.uint8))) != out.nbytes:
    raise GramError(f"{path}: truncated file while reading tensor '{name}'")
  return out


def write_file(path: str, tensors: Iterable[tuple[str, tuple[int, ...], np.dtype, Any]],
               metadata: dict[str, str] | None = None) -> None:
  """Writes tensors given as (name, shape, dtype, producer) and calls each producer once.

  The producer returns the numpy array when its turn comes, so only one tensor is alive.
  """
  tensors = list(tensors)
  header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
  offset = 0
  for name, shape, dtype, _ in tensors:
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    header[name] = {"dtype": _CODES[np.dtype(dtype)], "shape": list(shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)
  with storage.open_file(path, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for name, shape, dtype, produce in tensors:
      array = np.ascontiguousarray(produce(), dtype=dtype)
      if array.shape != tuple(shape):
        raise ValueError(f"tensor {name}: produced shape {array.shape}, declared {shape}")
      f.write(memoryview(array.reshape(-1).view(np.uint8)))
    f.flush()
    if not storage.is_remote(path):
      os.fsync(f.fileno())
