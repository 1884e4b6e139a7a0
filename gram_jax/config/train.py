"""Sections `train` and `checkpoint`: the optimizer, schedule, batch and step count, and how
often a run saves; views: the optimizer settings, the rows each process feeds."""
import math
import os

import jax
import ml_collections

from gram_jax.config import mesh
from gram_jax.config.rules import Rule, at_least, count_or_unset, one_of, positive, within
from gram_jax.errors import GramError
from gram_jax.training import settings


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.train = ml_collections.ConfigDict()
  c.train.learning_rate = 1e-3
  c.train.warmup_ratio = 0.1
  c.train.end_lr_ratio = 0.0
  c.train.num_epochs = 1.0
  c.train.num_steps = -1  # > 0 overrides num_epochs
  c.train.per_device_batch_size = 8  # rows per data-parallel device per micro-batch
  c.train.global_batch_size = -1  # > 0: rows per optimizer step, overrides per_device
  c.train.micro_batches = 1  # gradient accumulation
  c.train.weight_decay = 0.0
  c.train.max_grad_norm = 1.0
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.eps = 1e-8
  c.train.peak_flops_per_device = 0.0  # 0 = look up by device kind
  c.train.label_smoothing = 0.1  # verdict loss; official convention (PyTorch label_smoothing)
  c.train.moment_dtype = "float32"  # Adam moments between steps: float32 | bfloat16 (half)
  c.train.memory_capacity_gb = 0.0  # per device; 0 = the device's own (unknown on CPU)
  c.train.max_bad_steps = 10  # stop after this many non-finite steps in a row (0 = never)
  c.train.loss_chunk_len = 512  # LM loss: positions projected to the vocabulary at a time (0 = all)


def add_checkpoint_defaults(c: ml_collections.ConfigDict) -> None:
  # resume_step: -1 resumes from the latest complete step; N falls back to step N (a damaged
  # latest step names it), setting the later steps aside in checkpoints_set_aside/.
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=50, keep=3, async_save=True,
                                                resume_step=-1))


RULES: dict[str, Rule] = {
    "checkpoint.resume_step": at_least(-1, "-1: the latest complete step"),
    "train.learning_rate": positive,
    "train.warmup_ratio": within(0.0, 1.0, closed=True),
    "train.end_lr_ratio": within(0.0, 1.0, closed=True),
    "train.num_epochs": positive,
    "train.num_steps": count_or_unset,
    "train.per_device_batch_size": at_least(1),
    "train.global_batch_size": count_or_unset,
    "train.micro_batches": at_least(1),
    "train.weight_decay": within(0.0, math.inf),
    "train.max_grad_norm": positive,
    "train.b1": within(0.0, 1.0),
    "train.b2": within(0.0, 1.0),
    "train.eps": positive,
    "train.label_smoothing": within(0.0, 1.0),
    "train.moment_dtype": one_of("float32", "bfloat16"),
    "train.loss_chunk_len": at_least(0, "0: every position at once"),
}


def optimizer_settings(c: ml_collections.ConfigDict) -> settings.Optimizer:
  t = c.train
  return settings.Optimizer(t.learning_rate, t.warmup_ratio, t.end_lr_ratio, t.weight_decay,
                            t.max_grad_norm, t.b1, t.b2, t.eps, t.moment_dtype)


def rows_per_process(c: ml_collections.ConfigDict) -> int:
  """Rows each process feeds per micro-batch, after checking the batch splits evenly."""
  dp = mesh.data_parallel_size(c)
  micro = c.train.micro_batches
  if micro < 1:
    raise GramError(f"config.train.micro_batches must be >= 1, got {micro}")
  if c.train.global_batch_size > 0:
    if c.train.global_batch_size % (dp * micro):
      raise GramError(
          f"config.train.global_batch_size ({c.train.global_batch_size}) is not divisible by "
          f"data-parallel size {dp} x micro_batches {micro}")
    rows = c.train.global_batch_size // micro
  else:
    if c.train.per_device_batch_size < 1:
      raise GramError("config.train.per_device_batch_size must be >= 1")
    rows = c.train.per_device_batch_size * dp
  if rows % jax.process_count():
    raise GramError(f"config.train: {rows} rows per micro-batch do not split over "
                    f"{jax.process_count()} processes")
  rows //= jax.process_count()
  # A step's token arrays on the host (ids, targets, positions, segments: int32), checked
  # before numpy tries (a batch of 10^12 rows ended in a MemoryError).
  step_bytes = rows * micro * c.data.seq_len * 4 * 4
  host_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if step_bytes > host_bytes // 2:
    raise GramError(f"config.train: a step of {rows * micro:,} rows x {c.data.seq_len} "
                    f"positions per process needs {step_bytes / 2**30:,.1f} GiB of host "
                    f"memory for its tokens alone, over half of this machine's "
                    f"{host_bytes / 2**30:,.1f} GiB; lower train.global_batch_size (or "
                    "per_device_batch_size) or data.seq_len")
  return rows
