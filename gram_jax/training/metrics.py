"""Training metrics to TensorBoard, a JSONL file and the console (process 0 only): a bar on a
terminal, periodic plain lines in a log file."""
import json
import os
import time
from typing import Any

import jax

from gram_jax import storage
from gram_jax.progress import Progress


class JsonlSink:
  """Appends JSON lines to a file. Local: append + flush per line. Object storage has no
  append: the whole object is rewritten at most every `every_seconds` and on flush()/close()
  (the loop flushes with every checkpoint, so a kill loses only lines a resume re-logs)."""

  def __init__(self, path: str, every_seconds: float = 30.0):
    self.path, self.every_seconds = path, every_seconds
    self.remote = storage.is_remote(path)
    if self.remote:
      self.text = storage.read_text(path) if storage.exists(path) else ""
      self.text = self.text[:self.text.rfind("\n") + 1]
      self.written_at = time.monotonic()
    else:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      self.file = open(path, "a", encoding="utf-8")

  def write(self, entry: dict[str, Any]) -> None:
    line = json.dumps(entry) + "\n"
    if not self.remote:
      self.file.write(line)
      self.file.flush()
      return
    self.text += line
    if time.monotonic() - self.written_at >= self.every_seconds:
      self.flush()

  def flush(self) -> None:
    if self.remote:
      storage.write_atomic(self.path, self.text)
      self.written_at = time.monotonic()

  def close(self) -> None:
    if self.remote:
      self.flush()
    else:
      self.file.close()


class MetricsLogger:
  def __init__(self, workdir: str, total_steps: int, start_step: int = 0, name: str = "train",
               desc: str = ""):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter
    self.workdir = workdir
    self.writer = SummaryWriter(os.path.join(workdir, "tensorboard", name))
    self.sinks = {name: JsonlSink(os.path.join(workdir, f"{name}_metrics.jsonl"))}
    self.name = name
    self.bar = Progress(total_steps, start_step, desc=desc or name, unit="step")

  def log(self, step: int, values: dict[str, Any]) -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if v is not None else None) for k, v in values.items()}
    for key, value in clean.items():
      if value is not None:
        self.writer.add_scalar(key, value, step)
    self.sinks[self.name].write({"step": step, **clean})
    self.bar.update(1, loss=clean.get("loss"), lr=clean.get("learning_rate"),
                    tokens_per_s=clean.get("tokens_per_second"))

  def log_extra(self, name: str, step: int, values: dict[str, Any]) -> None:
    """Metrics that are not per step (e.g. evaluations) go to `{name}_metrics.jsonl`."""
    if not self.enabled:
      return
    for key, value in values.items():
      self.writer.add_scalar(f"{name}/{key}", float(value), step)
    if name not in self.sinks:
      self.sinks[name] = JsonlSink(os.path.join(self.workdir, f"{name}_metrics.jsonl"))
    self.sinks[name].write({"step": step, **{k: float(v) for k, v in values.items()}})
    self.bar.write(f"step {step} {name}: " + ", ".join(f"{k}={float(v):.4f}"
                                                      for k, v in values.items()))

  def flush(self) -> None:
    """Makes everything logged so far durable (called with each checkpoint save)."""
    if self.enabled:
      self.writer.flush()
      for sink in self.sinks.values():
        sink.flush()

  def close(self) -> None:
    if self.enabled:
      self.bar.close()
      self.writer.close()
      for sink in self.sinks.values():
        sink.close()


def read_jsonl_metrics(path: str) -> dict[int, dict[str, Any]]:
  """Last logged entry per step (a resumed run re-logs the steps after its checkpoint)."""
  entries = {}
  for line in storage.read_text(path).splitlines(keepends=True):
    if line.endswith("\n"):
      entry = json.loads(line)
      entries[entry["step"]] = entry
  return entries
