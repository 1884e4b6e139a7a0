"""Crash-safe files: atomic whole-file writes, and journals of finished work for long loops.

A journal is JSON lines. Its first line says what work it belongs to (the input, the model,
the settings); each later line is one finished item. A journal whose first line names other
work is set aside (`.stale`), not resumed. A kill loses at most the chunk in flight:
- local: one append-only file; lines are appended with flush + fsync after each chunk; a last
  line without its newline is a torn write, never read as data and cut off before the next
  append;
- object storage (no append): the journal is a folder with one object per chunk
  (00000000.jsonl, ...); an object upload is all or nothing, so there is nothing torn.
"""
import hashlib
import json
import os
from typing import Any, Callable, Iterable, Sequence

import jax
from absl import logging

from gram_jax import preemption, storage
from gram_jax.errors import GramError
from gram_jax.progress import Progress


def jsonl_text(rows: Sequence[dict]) -> str:
  """ASCII JSON lines: any Python string, lone surrogates included, survives the round trip."""
  return "".join(json.dumps(row) + "\n" for row in rows)


def write_jsonl(rows: Iterable[dict], path: str) -> str:
  """A JSONL file written atomically: a reader never sees it half-written."""
  return storage.write_atomic(path, jsonl_text(list(rows)))


class Journal:
  def __init__(self, path: str, header: dict[str, Any]):
    self.path, self.header = path, {"journal": header}
    self.writer = jax.process_index() == 0
    self.remote = storage.is_remote(path)

  def _chunks(self) -> list[str]:
    if not storage.isdir(self.path):
      return []
    return [os.path.join(self.path, name) for name in storage.listdir(self.path)]

  def _data(self) -> bytes | None:
    if self.remote:
      chunks = self._chunks()
      return b"".join(storage.read_bytes(chunk) for chunk in chunks) if chunks else None
    if not os.path.exists(self.path):
      return None
    with open(self.path, "rb") as f:
      return f.read()

  def read(self) -> list[dict]:
    """The finished items; drops a torn last line (on disk too) and other work's journal."""
    data = self._data()
    if data is None:
      return []
    complete = data[:data.rfind(b"\n") + 1]
    lines = complete.split(b"\n")[:-1]  # bytes: JSON text may hold U+2028 and friends
    try:
      header = json.loads(lines[0]) if lines else None
    except ValueError:
      header = None
    if header != self.header:
      if self.writer:
        self._set_aside()
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

  def _set_aside(self) -> None:
    stale = self.path + ".stale"
    if not self.remote:
      os.replace(self.path, stale)
      return
    storage.rmtree(stale)
    for chunk in self._chunks():
      storage.move(chunk, os.path.join(stale, os.path.basename(chunk)))

  def append(self, rows: Sequence[dict]) -> None:
    if not self.writer:
      return
    if self.remote:
      chunks = self._chunks()
      text = jsonl_text(([] if chunks else [self.header]) + list(rows))
      storage.write_atomic(os.path.join(self.path, f"{len(chunks):08d}.jsonl"), text)
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
    if self.writer and self.remote:
      storage.rmtree(self.path)
    elif self.writer:
      storage.remove(self.path)


def run_in_chunks(items: Sequence[Any], work: Callable[[Sequence[Any], int], list[dict]],
                  log: Journal, chunk_size: int, desc: str = "",
                  unit: str = "item") -> list[dict]:
  """`work(chunk, first_index)` over `items`, one journaled chunk at a time, resuming after
  the last finished item; on SIGTERM it stops after the chunk in flight (`Preempted`)."""
  rows = log.read()
  if len(rows) > len(items):
    raise GramError(f"{log.path}: {len(rows)} finished items but only {len(items)} to do")
  if rows:
    logging.info("%s: resuming at item %d of %d", log.path, len(rows), len(items))
  bar = Progress(len(items), len(rows), desc=desc, unit=unit,
                 enabled=bool(desc) and log.writer)
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
