"""What training reads of a run, as typed values. The stage builds them from its config
(`stages.common.training_settings`); the step loop, resume and the memory plan never read
the config."""
import dataclasses
from typing import Any, Callable, Iterator

from gram_jax.models import lora


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """AdamW with a warmup-cosine schedule and global-norm clipping."""
  learning_rate: float
  warmup_ratio: float = 0.1
  end_lr_ratio: float = 0.0
  weight_decay: float = 0.0
  max_grad_norm: float = 1.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  moment_dtype: str = "float32"  # Adam moments between steps: float32 | bfloat16


@dataclasses.dataclass(frozen=True)
class Checkpoints:
  every_steps: int
  keep: int
  async_save: bool
  resume_step: int = -1  # -1: the latest complete step; else fall back to this one


# `changes(model_config, make_trainer, batches, compiled, mesh)`: what the user could change
# when the memory plan does not fit, cheapest first, each with a way to compile it; the stage
# phrases them as its config's flags (stages.memory_advice).
MemoryAdvice = Callable[..., Iterator[Any]]


@dataclasses.dataclass(frozen=True)
class Training:
  workdir: str
  steps: int  # the run's length; a resumed run continues to it
  seed: int
  optimizer: Optimizer
  rules: tuple  # logical axis -> mesh axes
  lora: lora.Lora | None  # adapters on a frozen base, or None (full training)
  checkpoints: Checkpoints
  max_bad_steps: int  # non-finite steps in a row before the run stops (0: never)
  peak_flops_per_device: float  # for MFU (0: from the device kind; none known: no MFU)
  memory_capacity_gb: float  # per device (0: the device's own)
  dry_run: bool  # log the memory plan, then stop
  run_config: str  # the run's config as JSON, recorded in the run directory
  result_fields: dict[str, Any]  # dotted path -> value: a checkpoint resumes under these only
  memory_advice: MemoryAdvice
  base_model: str = ""  # config.model.path: what a LoRA run's adapters adapt
