"""The training step's memory per device, read from the compiled step before any weight is
loaded, so a run that cannot fit stops in one line instead of an out-of-memory traceback
after minutes of loading.

XLA's memory analysis of the step compiled for the real mesh gives, per device, the bytes of
its arguments (parameters, optimizer state, batch), outputs (the donated state aliases its
arguments) and temporaries (activations, gradients); the peak is their sum less the aliased
bytes. The capacity is the device's own (`memory_stats()['bytes_limit']`) or
`config.train.memory_capacity_gb`. When the peak is over it, the plan compiles the step again
with what the user could change — `config.model.remat=full`, `train.moment_dtype=bfloat16`,
more `train.micro_batches`, LoRA adapters — and names the first change that fits; the
change is verified, not estimated.
"""
import dataclasses
import math
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from gram_jax.errors import GramError

GB = 1 << 30


class DryRun(Exception):
  """`config.dry_run`: the plan was printed; nothing was loaded or trained."""


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device (the largest shard of each array, so the busiest device); with LoRA
  the parameters are the frozen base and the adapters."""
  params: int
  optimizer: int
  batch: int
  arguments: int  # XLA's figure: params + optimizer + batch + step and rng
  outputs: int
  aliased: int  # outputs that reuse donated arguments
  temporaries: int
  capacity: int | None

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries

  def fits(self) -> bool:
    return self.capacity is None or self.peak <= self.capacity

  def line(self) -> str:
    capacity = ("no capacity known (set config.train.memory_capacity_gb to check one)"
                if self.capacity is None else
                f"of {_gb(self.capacity)} ({100 * self.peak / self.capacity:.0f} %)")
    return (f"memory plan per device: parameters {_gb(self.params)}, optimizer state "
            f"{_gb(self.optimizer)}, batch {_gb(self.batch)}, temporaries "
            f"{_gb(self.temporaries)}; peak {_gb(self.peak)} {capacity}")


def _gb(count: int) -> str:
  if count >= GB:
    return f"{count / GB:.2f} GB"
  return f"{count / (1 << 20):.1f} MB" if count >= 1 << 20 else f"{count / 1024:.0f} KB"


def shard_bytes(tree: Any) -> int:
  """Bytes of the largest shard of every array in a tree of ShapeDtypeStructs with
  shardings (what one device holds)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def device_capacity(capacity_gb: float) -> int | None:
  """`capacity_gb` when > 0, else this process's first device's memory limit (None on CPU,
  which reports none)."""
  if capacity_gb > 0:
    return int(capacity_gb * GB)
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def measure(compiled: jax.stages.Compiled, abstract_state: dict, abstract_batch: dict,
            capacity: int | None) -> MemoryPlan:
  analysis = compiled.memory_analysis()
  return MemoryPlan(
      params=shard_bytes(abstract_state["params"]) + shard_bytes(abstract_state.get("frozen")),
      optimizer=shard_bytes(abstract_state["opt_state"]), batch=shard_bytes(abstract_batch),
      arguments=analysis.argument_size_in_bytes, outputs=analysis.output_size_in_bytes,
      aliased=analysis.alias_size_in_bytes, temporaries=analysis.temp_size_in_bytes,
      capacity=capacity)


REMEDY_BUDGET_S = 60.0  # compiling changes that might fit, at most this long


@dataclasses.dataclass(frozen=True)
class Change:
  """A change the user can make: its override flags and how to compile the step with it."""
  flags: str
  compile: Callable[[], tuple[jax.stages.Compiled, dict, dict]]


def refusal(plan: MemoryPlan, changes: Iterator[Change],
            budget_s: float = REMEDY_BUDGET_S) -> GramError:
  """The one-line error for a plan over capacity, naming the first change that fits. Each
  change is a compile (~10 s for a large model): past `budget_s` the search stops and says
  how many were tried (an absurd batch once compiled 35 before its line)."""
  started, tried = time.monotonic(), 0
  for change in changes:
    if tried and time.monotonic() - started > budget_s:
      advice = (f"none of the {tried} cheapest changes fits (tried for {budget_s:.0f} s): "
                "more devices, a shorter config.data.seq_len, or fewer rows a device")
      break
    tried += 1
    compiled, state, batch = change.compile()
    fixed = measure(compiled, state, batch, plan.capacity)
    if fixed.fits():
      advice = f"{change.flags} fits (peak {_gb(fixed.peak)})"
      break
  else:
    advice = ("no mesh, remat, moment, micro-batch, LoRA or QLoRA setting fits: more "
              "devices, a shorter config.data.seq_len, or fewer rows a device")
  return GramError(f"{plan.line()}: does not fit; {advice}")
