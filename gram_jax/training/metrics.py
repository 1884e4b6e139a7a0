"""Training metrics to TensorBoard, a JSONL file and a console progress bar (process 0 only)."""
import json
import os
from typing import Any

import jax
import tqdm


class MetricsLogger:
  def __init__(self, workdir: str, total_steps: int, start_step: int = 0, name: str = "train"):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter
    os.makedirs(workdir, exist_ok=True)
    self.workdir = workdir
    self.writer = SummaryWriter(os.path.join(workdir, "tensorboard", name))
    self.jsonl = open(os.path.join(workdir, f"{name}_metrics.jsonl"), "a", encoding="utf-8")
    self.bar = tqdm.tqdm(total=total_steps, initial=start_step, desc=name, unit="step",
                         dynamic_ncols=True)

  def log(self, step: int, values: dict[str, Any]) -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if v is not None else None) for k, v in values.items()}
    for key, value in clean.items():
      if value is not None:
        self.writer.add_scalar(key, value, step)
    self.jsonl.write(json.dumps({"step": step, **clean}) + "\n")
    self.jsonl.flush()
    self.bar.set_postfix({k: f"{clean[k]:.4g}" for k in ("loss", "learning_rate")
                          if clean.get(k) is not None})
    self.bar.update(1)

  def log_extra(self, name: str, step: int, values: dict[str, Any]) -> None:
    """Metrics that are not per step (e.g. evaluations) go to `{name}_metrics.jsonl`."""
    if not self.enabled:
      return
    for key, value in values.items():
      self.writer.add_scalar(f"{name}/{key}", float(value), step)
    with open(os.path.join(self.workdir, f"{name}_metrics.jsonl"), "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
    self.bar.write(f"step {step} {name}: " + ", ".join(f"{k}={float(v):.4f}"
                                                      for k, v in values.items()))

  def close(self) -> None:
    if self.enabled:
      self.bar.close()
      self.writer.close()
      self.jsonl.close()


def read_jsonl_metrics(path: str) -> dict[int, dict[str, Any]]:
  """Last logged entry per step (a resumed run re-logs the steps after its checkpoint)."""
  entries = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.endswith("\n"):
        entry = json.loads(line)
        entries[entry["step"]] = entry
  return entries
