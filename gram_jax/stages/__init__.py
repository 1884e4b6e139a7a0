"""One module per stage; each exposes run(config)."""
import os
from typing import Callable, Iterable

import jax

from gram_jax import journal, parallel


def builtin_jsonl(path: str, make_rows: Callable[[], Iterable[dict]]) -> str:
  """Writes a built-in data file once (process 0, atomically); every process waits for it."""
  if jax.process_index() == 0 and not os.path.exists(path):
    journal.write_jsonl(make_rows(), path)
  parallel.sync(f"builtin:{path}")
  return path
