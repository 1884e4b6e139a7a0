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


def read_header(path: str) -> tuple[dict[str, Any], int]:
  """Returns ({tensor name: entry}, byte offset of the data section)."""
  try:
    with storage.open_file(path, "rb") as f:
      (size,) = struct.unpack("<Q", f.read(8))
      header = json.loads(f.read(size))
  except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
    raise GramError(f"{path}: not a readable safetensors file ({e})") from None
  header.pop("__metadata__", None)
  return header, 8 + size


def read_tensor(path: str, entry: dict[str, Any], data_start: int, name: str) -> np.ndarray:
  """Reads one tensor with a positioned read (no mmap, so its pages leave RSS when freed)."""
  if entry["dtype"] not in DTYPES:
    raise GramError(f"{path}: tensor '{name}' has unsupported dtype {entry['dtype']}")
  begin, end = entry["data_offsets"]
  out = np.empty(entry["shape"], DTYPES[entry["dtype"]])
  if out.nbytes != end - begin:
    raise GramError(f"{path}: tensor '{name}' header is inconsistent "
                    f"(shape {entry['shape']} but {end - begin} bytes)")
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
