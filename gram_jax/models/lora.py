"""LoRA and QLoRA: low-rank adapters over frozen (optionally 8- or 4-bit) projection kernels,
as pure functions on the parameter dict and two kernel types `dense` knows.

A target kernel W [*in, *out] gets a [prod(in), rank] and b [rank, prod(out)]; the layer
computes x·W + scale · (dropout(x)·a)·b, as PEFT does, with scale = alpha / rank. b starts at
zero, so step 0 is the base model. The adapted product never forms W + a·b: the step's
temporaries stay those of the frozen forward plus two thin products, and no gradient of W
is computed. a is sharded along W's first input axis and b along W's first output axis, like
the weight they adapt.

QLoRA holds the frozen base's target kernels as `Quantized` codes: int8 with one absmax scale
per output (8 bits a weight), or NF4 (the QLoRA paper's 16 normal-quantile levels) with one
absmax per block of 64 inputs and output (4 bits a weight plus a float32 scale per 64). NF4
codes are packed two to a byte along the last input axis ourselves: XLA's CPU compiler lays
uint4 arguments out packed while arrays made by another jit are not, and the compiled step
refuses them.

Why our own module rather than qwix (0.1.8): qwix intercepts dot_general calls on raw
parameters, and on this decoder it found only the LM head's einsum: the projections
multiply reshaped kernels (`models.decoder.dense`), which it does not see.
"""
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

# target name -> (block, kernel, input axes of the kernel)
TARGETS = {"q": ("attn", "q_kernel", 1), "k": ("attn", "k_kernel", 1),
           "v": ("attn", "v_kernel", 1), "o": ("attn", "o_kernel", 2),
           "gate": ("mlp", "gate_kernel", 1), "up": ("mlp", "up_kernel", 1),
           "down": ("mlp", "down_kernel", 1)}
QUANTIZERS = ("", "int8", "nf4")
# NF4: the 16 levels of QLoRA (Dettmers et al., 2023), quantiles of a standard normal
# rescaled to [-1, 1] with an exact zero.
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], np.float32)
NF4_BLOCK = 64


@dataclasses.dataclass(frozen=True)
class Lora:
  """What to adapt and how: `config.model.lora` (rank 0 = no adapters, full training)."""
  targets: tuple[str, ...]
  rank: int
  alpha: float
  dropout: float = 0.0
  quantize: str = ""  # the frozen base's target kernels: "" (as loaded), "int8" or "nf4"

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "Lora":
    return cls(**{**values, "targets": tuple(values["targets"])})


def parse_targets(targets: str) -> tuple[str, ...]:
  names = tuple(t.strip() for t in targets.split(",") if t.strip())
  unknown = [t for t in names if t not in TARGETS]
  if unknown or not names:
    raise ValueError(f"config.model.lora.targets: {unknown or targets!r} not in "
                     f"{', '.join(TARGETS)}")
  return names


class _Kernel:
  """Read through `nnx.Variable[...]` like an array, and shaped like the kernel it stands for."""

  def __getitem__(self, index):
    if index is not Ellipsis:
      raise TypeError(f"{type(self).__name__} supports only [...]")
    return self


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Quantized(_Kernel):
  """A frozen kernel as codes (int8 in its shape, or NF4 indices two to a uint8 along its
  last input axis) and float32 absmax scales [blocks, *out] over blocks of its flattened
  inputs."""
  codes: jax.Array
  scales: jax.Array
  kind: str = dataclasses.field(metadata=dict(static=True))
  dtype: str = dataclasses.field(metadata=dict(static=True))  # of the kernel it stands for
  inputs: int = dataclasses.field(metadata=dict(static=True))  # the kernel's input axes

  @property
  def shape(self) -> tuple[int, ...]:
    if self.kind == "int8":
      return self.codes.shape
    axis = self.inputs - 1
    return (*self.codes.shape[:axis], 2 * self.codes.shape[axis], *self.codes.shape[axis + 1:])

  def dequantize(self, dtype=None) -> jax.Array:
    blocks = self.scales.shape[0]
    if self.kind == "int8":
      levels = self.codes.astype(jnp.float32) / 127.0
    else:
      pairs = jnp.stack([self.codes & 15, self.codes >> 4], axis=self.inputs)
      levels = jnp.asarray(NF4_LEVELS)[pairs.reshape(self.shape).astype(jnp.int32)]
    scales = self.scales.reshape(blocks, 1, -1)
    weight = levels.reshape(blocks, -1, scales.shape[-1]) * scales
    return weight.reshape(self.shape).astype(dtype or self.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Adapted(_Kernel):
  """A frozen kernel (array or Quantized) with its adapters; `key` (raw key data, or None
  outside training) drives the adapter's input dropout."""
  base: jax.Array | Quantized
  a: jax.Array
  b: jax.Array
  key: jax.Array | None
  scale: float = dataclasses.field(metadata=dict(static=True))
  dropout: float = dataclasses.field(metadata=dict(static=True))

  @property
  def shape(self) -> tuple[int, ...]:
    return self.base.shape


def matmul(x: jax.Array, kernel) -> jax.Array:
  """x [tokens, in] @ kernel flattened to [in, out], for a plain, Quantized or Adapted
  kernel, in x's dtype (the adapter's thin products in its own float32)."""
  if isinstance(kernel, Adapted):
    h = x.astype(kernel.a.dtype)
    if kernel.dropout and kernel.key is not None:
      keep = jax.random.bernoulli(jax.random.wrap_key_data(kernel.key), 1.0 - kernel.dropout,
                                  h.shape)
      h = jnp.where(keep, h / (1.0 - kernel.dropout), 0.0)
    update = (h @ kernel.a) @ kernel.b * kernel.scale
    return matmul(x, kernel.base) + update.astype(x.dtype)
  if isinstance(kernel, Quantized):
    kernel = kernel.dequantize(x.dtype)
  return x @ kernel.astype(x.dtype).reshape(x.shape[1], -1)


def block_size(fan_in: int, kind: str) -> int:
  """Inputs that share one scale: 64 for NF4 (the whole input when it does not divide)."""
  return NF4_BLOCK if kind == "nf4" and fan_in % NF4_BLOCK == 0 else fan_in


def quantize(kernel: jax.Array, inputs: int, kind: str) -> Quantized:
  """`kernel` [*in, *out] (its first `inputs` axes are inputs) as int8 or NF4 codes."""
  fan_in = math.prod(kernel.shape[:inputs])
  block = block_size(fan_in, kind)
  w = kernel.astype(jnp.float32).reshape(fan_in // block, block, -1)
  absmax = jnp.max(jnp.abs(w), axis=1, keepdims=True)
  normed = w / jnp.where(absmax == 0, 1.0, absmax)
  if kind == "int8":
    codes = jnp.clip(jnp.round(normed * 127.0), -127, 127).astype(jnp.int8)
  elif kind == "nf4":
    midpoints = jnp.asarray((NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2)
    indices = jnp.searchsorted(midpoints, normed).astype(jnp.uint8).reshape(kernel.shape)
    axis = inputs - 1
    if kernel.shape[axis] % 2:
      raise ValueError(f"nf4: a kernel of shape {kernel.shape} has an odd last input axis")
    pairs = indices.reshape(*kernel.shape[:axis], -1, 2, *kernel.shape[axis + 1:])
    codes = jnp.take(pairs, 0, axis=inputs) | (jnp.take(pairs, 1, axis=inputs) << 4)
  else:
    raise ValueError(f"config.model.lora.quantize: {kind!r} not in int8, nf4")
  return Quantized(codes if kind == "nf4" else codes.reshape(kernel.shape),
                   absmax.reshape(-1, *kernel.shape[inputs:]), kind,
                   jnp.dtype(kernel.dtype).name, inputs)


def _kernels(params: dict, targets: tuple[str, ...]):
  """(layer, block, kernel name, input axes, kernel) of every target kernel."""
  for layer, blocks in params["layers"].items():
    for target in targets:
      block, name, inputs = TARGETS[target]
      yield layer, block, name, inputs, blocks[block][name]


def _replace_kernels(params: dict, new: dict) -> dict:
  """`params` with the kernels in `new` ({layer: {block: {name: value}}}) replaced."""
  layers = {}
  for layer, blocks in params["layers"].items():
    changed = new.get(layer, {})
    layers[layer] = {block: ({**values, **changed[block]} if block in changed else values)
                     for block, values in blocks.items()}
  return {**params, "layers": layers}


def _nested(items) -> dict:
  out: dict = {}
  for (layer, block, name), value in items:
    out.setdefault(layer, {}).setdefault(block, {})[name] = value
  return out


def init_adapters(params: dict, targets: tuple[str, ...], rank: int, key: jax.Array) -> dict:
  """Adapters {layers: {i: {block: {kernel: {a, b}}}}} for `params` (arrays or shapes):
  a uniform in ±1/sqrt(fan-in) (PEFT's default scale), b zero, float32."""
  items = []
  for index, (layer, block, name, inputs, kernel) in enumerate(_kernels(params, targets)):
    fan_in, fan_out = math.prod(kernel.shape[:inputs]), math.prod(kernel.shape[inputs:])
    bound = 1.0 / math.sqrt(fan_in)
    a = jax.random.uniform(jax.random.fold_in(key, index), (fan_in, rank), jnp.float32,
                           -bound, bound)
    items.append(((layer, block, name), {"a": a, "b": jnp.zeros((rank, fan_out), jnp.float32)}))
  return {"layers": _nested(items)}


def adapter_shardings(params_shardings: dict, targets: tuple[str, ...]) -> dict:
  """Shardings of the adapters, from those of the weights they adapt."""
  items = []
  for layer, block, name, inputs, sharding in _kernels(params_shardings, targets):
    spec = tuple(sharding.spec) + (None,) * 4
    items.append(((layer, block, name), {
        "a": NamedSharding(sharding.mesh, PartitionSpec(spec[0], None)),
        "b": NamedSharding(sharding.mesh, PartitionSpec(None, spec[inputs]))}))
  return {"layers": _nested(items)}


def quantize_base(params: dict, spec: Lora) -> dict:
  """The frozen base with its target kernels quantized (as it is when `spec.quantize` is "")."""
  if not spec.quantize:
    return params
  return _replace_kernels(params, _nested(
      ((layer, block, name), quantize(kernel, inputs, spec.quantize))
      for layer, block, name, inputs, kernel in _kernels(params, spec.targets)))


def base_shardings(params_shardings: dict, abstract_params: dict, spec: Lora) -> dict:
  """Shardings of `quantize_base`'s output: codes like the kernel; scales along its outputs,
  and their blocks along its first input axis where the blocks divide over it (a device's
  slice of that axis is a whole number of blocks)."""
  if not spec.quantize:
    return params_shardings
  items = []
  for (layer, block, name, inputs, sharding), (*_, kernel) in zip(
      _kernels(params_shardings, spec.targets), _kernels(abstract_params, spec.targets)):
    axes = (tuple(sharding.spec) + (None,) * kernel.ndim)[:kernel.ndim]
    fan_in = math.prod(kernel.shape[:inputs])
    blocks = fan_in // block_size(fan_in, spec.quantize)
    first = axes[0]
    devices = math.prod(sharding.mesh.shape[a] for a in
                        (first if isinstance(first, tuple) else (first,))) if first else 1
    block_axis = first if first and blocks % devices == 0 else None
    items.append(((layer, block, name), Quantized(
        sharding, NamedSharding(sharding.mesh, PartitionSpec(block_axis, *axes[inputs:])),
        spec.quantize, jnp.dtype(kernel.dtype).name, inputs)))
  return _replace_kernels(params_shardings, _nested(items))


def attach(base: dict, adapters: dict, spec: Lora, key: jax.Array | None = None) -> dict:
  """`base` with every adapted kernel an `Adapted` (dropout keys folded from `key`, raw key
  data, when given): the parameters the model trains with."""
  items = []
  for index, (layer, block, name, _, kernel) in enumerate(_kernels(base, spec.targets)):
    adapter = adapters["layers"][layer][block][name]
    kernel_key = None
    if key is not None and spec.dropout:
      kernel_key = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(key),
                                                          index))
    items.append(((layer, block, name), Adapted(kernel, adapter["a"], adapter["b"],
                                                kernel_key, spec.scale, spec.dropout)))
  return _replace_kernels(base, _nested(items))


def merge(base: dict, adapters: dict, spec: Lora) -> dict:
  """Plain weights: W (dequantized when quantized) + scale · (a @ b) for every adapted
  kernel, in W's dtype."""
  items = []
  for layer, block, name, _, kernel in _kernels(base, spec.targets):
    adapter = adapters["layers"][layer][block][name]
    weight = kernel.dequantize(jnp.float32) if isinstance(kernel, Quantized) else kernel
    delta = ((adapter["a"] @ adapter["b"]) * spec.scale).reshape(weight.shape)
    items.append(((layer, block, name),
                  (weight.astype(jnp.float32) + delta).astype(kernel.dtype)))
  return _replace_kernels(base, _nested(items))
