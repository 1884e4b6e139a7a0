"""Static-shape batching for inference: length buckets and left padding."""
from typing import Sequence

import numpy as np

MIN_BUCKET = 16
LINEAR_BUCKET = 256


def bucket_length(length: int, max_len: int) -> int:
  """Padded width for a batch: powers of two up to 256, then multiples of 256, capped at
  max_len. A few jitted shapes serve every length with under 25% padding past 256."""
  if length <= LINEAR_BUCKET:
    width = max(MIN_BUCKET, 1 << (max(length, 1) - 1).bit_length())
  else:
    width = -(-length // LINEAR_BUCKET) * LINEAR_BUCKET
  return min(max_len, width)


def bucket_rows(rows: int, batch_size: int, multiple: int = 1) -> int:
  """Rows a device batch holds for `rows` prompts: the next power of two (at least
  `multiple`, the data-parallel size, and a multiple of it), capped at batch_size. A one-pair
  call then costs two rows, not a whole batch of padding."""
  bucket = max(1 << (max(rows, 1) - 1).bit_length(), multiple)
  return min(batch_size, -(-bucket // multiple) * multiple)


def row_buckets(batch_size: int, multiple: int = 1) -> list[int]:
  """Every row count bucket_rows can return for batch_size, smallest first."""
  return sorted({bucket_rows(n, batch_size, multiple) for n in range(1, batch_size + 1)})


def bucket_widths(max_len: int) -> list[int]:
  """Every width bucket_length can return for max_len, smallest first."""
  return sorted({bucket_length(n, max_len) for n in
                 [1 << k for k in range(max_len.bit_length() + 1)] +
                 list(range(LINEAR_BUCKET, max_len + LINEAR_BUCKET, LINEAR_BUCKET))})


def left_pad(rows: Sequence[Sequence[int]], batch_size: int, width: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Token ids and attention mask [batch_size, width], each row right-aligned (left padding).

  Filler rows past len(rows) get one visible pad token so every row is well defined.
  """
  ids = np.full((batch_size, width), pad_id, np.int32)
  mask = np.zeros((batch_size, width), np.int32)
  for r, row in enumerate(rows):
    ids[r, width - len(row):] = row
    mask[r, width - len(row):] = 1
  mask[len(rows):, -1] = 1
  return ids, mask
