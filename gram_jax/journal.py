"""Crash-safe files: atomic whole-file writes, and journals of finished work for long loops.

A journal is an append-only JSONL file. Its first line says what work it belongs to (the
input, the model, the settings); each later line is one finished item. Lines are appended
with flush + fsync after each chunk, so a kill loses at most the chunk in flight. A last line
without its newline is a torn write: it is never read as data and is cut off before the next
append. A journal whose first line names other work is set aside, not resumed.
"""
import hashlib
import json
import os
from typing import Any, Callable, Iterable, Sequence

import jax
import tqdm
from absl import logging

from gram_jax import preemption
from gram_jax.errors import GramError


def write_atomic(path: str, text: str) -> str:
  """Writes `text` to a temporary file, fsyncs, and renames: readers see old or new, whole."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except (OSError, UnicodeError) as e:
    raise GramError(f"{path}: cannot write ({getattr(e, 'strerror', None) or e})") from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def jsonl_text(rows: Sequence[dict]) -> str:
  """ASCII JSON lines: any Python string, lone surrogates included, survives the round trip."""
  return "".join(json.dumps(row) + "\n" for row in rows)


def write_jsonl(rows: Iterable[dict], path: str) -> str:
  """A JSONL file written atomically: a reader never sees it half-written."""
  return write_atomic(path, jsonl_text(list(rows)))


class Journal:
  def __init__(self, path: str, header: dict[str, Any]):
    self.path, self.header = path, {"journal": header}
    self.writer = jax.process_index() == 0

  def read(self) -> list[dict]:
    """The finished items; drops a torn last line (on disk too) and other work's journal."""
    if not os.path.exists(self.path):
      return []
    with open(self.path, "rb") as f:
      data = f.read()
    complete = data[:data.rfind(b"\n") + 1]
    lines = complete.split(b"\n")[:-1]  # bytes: JSON text may hold U+2028 and friends
    try:
      header = json.loads(lines[0]) if lines else None
    except ValueError:
      header = None
    if header != self.header:
      if self.writer:
        os.replace(self.path, self.path + ".stale")
      logging.warning("%s: journal of other work (or empty) set aside as .stale", self.path)
      return []
    rows = []
    for number, line in enumerate(lines[1:], start=2):
      try:
        rows.append(json.loads(line))
      except ValueError as e:
        raise GramError(f"{self.path}:{number}: corrupt journal line ({e})") from None
    if len(complete) < len(data) and self.writer:
      logging.warning("%s: dropping a torn last line (%d bytes)", self.path,
                      len(data) - len(complete))
      with open(self.path, "r+b") as f:
        f.truncate(len(complete))
    return rows

  def append(self, rows: Sequence[dict]) -> None:
    if not self.writer:
      return
    new = not os.path.exists(self.path)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    try:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(jsonl_text(([self.header] if new else []) + list(rows)))
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise GramError(f"{self.path}: cannot append ({e.strerror or e})") from None

  def remove(self) -> None:
    if self.writer and os.path.exists(self.path):
      os.remove(self.path)


def run_in_chunks(items: Sequence[Any], work: Callable[[Sequence[Any], int], list[dict]],
                  log: Journal, chunk_size: int, desc: str = "") -> list[dict]:
  """`work(chunk, first_index)` over `items`, one journaled chunk at a time, resuming after
  the last finished item; on SIGTERM it stops after the chunk in flight (`Preempted`)."""
  rows = log.read()
  if len(rows) > len(items):
    raise GramError(f"{log.path}: {len(rows)} finished items but only {len(items)} to do")
  if rows:
    logging.info("%s: resuming at item %d of %d", log.path, len(rows), len(items))
  bar = tqdm.tqdm(total=len(items), initial=len(rows), desc=desc, unit="item",
                  disable=not desc or not log.writer, dynamic_ncols=True)
  for start in range(len(rows), len(items), chunk_size):
    done = work(items[start:start + chunk_size], start)
    log.append(done)
    rows += done
    bar.update(len(done))
    if preemption.should_stop() and len(rows) < len(items):
      bar.close()
      raise preemption.Preempted(f"{len(rows)} of {len(items)} items saved in {log.path}")
  bar.close()
  return rows


def fingerprint(items: list[dict]) -> str:
  """What a journal's work is, in a few bytes: a hash of its inputs."""
  return f"{len(items)}:" + hashlib.sha256(
      json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]
