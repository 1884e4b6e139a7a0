"""LoRA: low-rank adapters on the decoder's projection kernels, as pure functions on the
parameter dict.

A target kernel W [*in, *out] gets a [prod(in), rank] and b [rank, prod(out)]; the model
runs with W + (alpha / rank) · (a @ b) reshaped to W. b starts at zero, so step 0 is the base
model. Training updates a and b only; the base weights stay frozen and are never saved
with the adapters. a is sharded along W's first input axis and b along W's first output
axis, like the weight they adapt.

Why our own module rather than qwix (0.1.8): qwix intercepts dot_general calls on raw
parameters, and on this decoder it found only the LM head's einsum: the projections
multiply reshaped kernels (`models.decoder.dense`), which it does not see.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

# target name -> (block, kernel, input axes of the kernel)
TARGETS = {"q": ("attn", "q_kernel", 1), "k": ("attn", "k_kernel", 1),
           "v": ("attn", "v_kernel", 1), "o": ("attn", "o_kernel", 2),
           "gate": ("mlp", "gate_kernel", 1), "up": ("mlp", "up_kernel", 1),
           "down": ("mlp", "down_kernel", 1)}


@dataclasses.dataclass(frozen=True)
class Lora:
  """What to adapt and how: `config.model.lora` (rank 0 = no adapters, full training)."""
  targets: tuple[str, ...]
  rank: int
  alpha: float

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def parse_targets(targets: str) -> tuple[str, ...]:
  names = tuple(t.strip() for t in targets.split(",") if t.strip())
  unknown = [t for t in names if t not in TARGETS]
  if unknown or not names:
    raise ValueError(f"config.model.lora.targets: {unknown or targets!r} not in "
                     f"{', '.join(TARGETS)}")
  return names


def _kernels(params: dict, targets: tuple[str, ...]):
  """(layer, block, kernel name, input axes, kernel) of every target kernel."""
  for layer, blocks in params["layers"].items():
    for target in targets:
      block, name, inputs = TARGETS[target]
      yield layer, block, name, inputs, blocks[block][name]


def init_adapters(params: dict, targets: tuple[str, ...], rank: int, key: jax.Array) -> dict:
  """Adapters {layers: {i: {block: {kernel: {a, b}}}}} for `params` (arrays or shapes):
  a uniform in ±1/sqrt(fan-in) (PEFT's default scale), b zero, float32."""
  adapters: dict = {"layers": {}}
  for index, (layer, block, name, inputs, kernel) in enumerate(_kernels(params, targets)):
    fan_in, fan_out = math.prod(kernel.shape[:inputs]), math.prod(kernel.shape[inputs:])
    bound = 1.0 / math.sqrt(fan_in)
    a = jax.random.uniform(jax.random.fold_in(key, index), (fan_in, rank), jnp.float32,
                           -bound, bound)
    adapters["layers"].setdefault(layer, {}).setdefault(block, {})[name] = {
        "a": a, "b": jnp.zeros((rank, fan_out), jnp.float32)}
  return adapters


def adapter_shardings(params_shardings: dict, targets: tuple[str, ...]) -> dict:
  """Shardings of the adapters, from those of the weights they adapt."""
  out: dict = {"layers": {}}
  for layer, block, name, inputs, sharding in _kernels(params_shardings, targets):
    spec = tuple(sharding.spec) + (None,) * 4
    out["layers"].setdefault(layer, {}).setdefault(block, {})[name] = {
        "a": NamedSharding(sharding.mesh, PartitionSpec(spec[0], None)),
        "b": NamedSharding(sharding.mesh, PartitionSpec(None, spec[inputs]))}
  return out


def merge(params: dict, adapters: dict, scale: float) -> dict:
  """`params` with W + scale · (a @ b) for every adapted kernel (the others as they are)."""
  layers = {}
  for layer, blocks in params["layers"].items():
    adapted = adapters["layers"].get(layer, {})
    layers[layer] = {block: {name: (_adapted(value, adapted[block][name], scale)
                                    if name in adapted.get(block, {}) else value)
                             for name, value in values.items()}
                     if isinstance(values, dict) else values
                     for block, values in blocks.items()}
  return {**params, "layers": layers}


def _adapted(kernel: jax.Array, adapter: dict[str, jax.Array], scale: float) -> jax.Array:
  delta = (adapter["a"] @ adapter["b"]) * scale
  return (kernel.astype(jnp.float32) + delta.reshape(kernel.shape)).astype(kernel.dtype)

