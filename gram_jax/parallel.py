"""Device mesh, logical-axis sharding rules, shardings for params and batches, and how
gram_jax's programs are compiled for the backend they run on."""
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gram_jax.errors import GramError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes (MaxText style). A mesh axis that does not divide the dimension
# is dropped for that parameter (e.g. 2 kv heads on tensor=4), which replicates it instead.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


# XLA:CPU hands dots, reductions and elementwise fusions to YNNPACK by default. Its reductions
# over the token axis (every norm scale's gradient) are slow, and keeping YNNPACK to the dots
# measured faster everywhere gram_jax runs: 2,048-token tiny step 0.14 -> 0.10 s, 56M
# scoring 2.9 -> 3.5 pairs/s, generation 790 -> 1,140 tokens/s (BENCHMARKS.md). A user's own
# XLA_FLAGS setting of the same option wins.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options() -> dict[str, str] | None:
  """XLA options for gram_jax's jitted programs on the default backend (None: XLA's own)."""
  if jax.default_backend() != "cpu":
    return None
  flags = os.environ.get("XLA_FLAGS", "")
  return {k: v for k, v in _CPU_OPTIONS.items() if k not in flags} or None


def jit(fun: Callable, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` with `compiler_options()`, built at the first call, so importing
  a module never starts a backend (multi-host runs initialise jax.distributed first). Its
  `lower` compiles ahead of time, as jax.jit's does."""
  jitted = []

  def built() -> Any:
    if not jitted:
      jitted.append(jax.jit(fun, compiler_options=compiler_options(), **kwargs))
    return jitted[0]

  def call(*args, **call_kwargs):
    return built()(*args, **call_kwargs)

  call.lower = lambda *args, **call_kwargs: built().lower(*args, **call_kwargs)
  return call


def make_mesh(shape: dict[str, int] | None = None, dcn_shape: dict[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a (data, fsdp, tensor) mesh; one size may be -1 to take the remaining devices.

  `dcn_shape` gives the per-axis split across slices (multi-slice TPU / multi-node GPU); the
  ICI shape is then per slice.
  """
  devices = list(devices if devices is not None else jax.devices())
  shape = {axis: int((shape or {}).get(axis, 1)) for axis in MESH_AXES}
  dcn = {axis: int((dcn_shape or {}).get(axis, 1)) for axis in MESH_AXES}
  for name, sizes, free_ok in (("mesh", shape, True), ("dcn_mesh", dcn, False)):
    for axis, size in sizes.items():
      if size < 1 and not (free_ok and size == -1):
        allowed = "a positive device count, or -1 for the rest" if free_ok else "positive"
        raise GramError(f"config.{name}.{axis}: {size} is not a mesh size ({allowed})")
  total = len(devices) // int(np.prod(list(dcn.values())))
  free = [axis for axis, size in shape.items() if size == -1]
  if len(free) > 1:
    raise GramError(f"mesh: at most one axis may be -1, got {free}")
  if free:
    known = int(np.prod([s for s in shape.values() if s != -1]))
    if total % known:
      raise GramError(f"mesh: {total} devices per slice are not divisible by {known}")
    shape[free[0]] = total // known
  size = int(np.prod(list(shape.values()))) * int(np.prod(list(dcn.values())))
  if size != len(devices):
    raise GramError(
        f"mesh: shape {shape} x dcn {dcn} needs {size} devices but {len(devices)} are present "
        f"({jax.default_backend()}); set config.mesh so the product equals the device count")
  ici = [shape[a] for a in MESH_AXES]
  if any(v > 1 for v in dcn.values()):
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_hybrid_device_mesh(ici, [dcn[a] for a in MESH_AXES], devices)
  else:
    grid = np.asarray(devices).reshape(ici)
  return Mesh(grid, MESH_AXES)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec, skipping mesh axes that cannot split a dim."""
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(logical_axes, shape):
    targets = table.get(name) if name else None
    targets = (targets,) if isinstance(targets, str) else tuple(targets or ())
    chosen = []
    for axis in targets:
      size = mesh.shape[axis]
      split = int(np.prod([mesh.shape[a] for a in chosen])) * size
      if size > 1 and axis not in used and dim % split == 0:
        chosen.append(axis)
    used.update(chosen)
    spec.append(tuple(chosen) if len(chosen) > 1 else (chosen[0] if chosen else None))
  return PartitionSpec(*spec)


def variable_sharding(variable: nnx.Variable, mesh: Mesh | None,
                      rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> jax.sharding.Sharding:
  """Sharding for one parameter from its `logical_axes` metadata."""
  if mesh is None:
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])
  axes = getattr(variable, "logical_axes", None) or (None,) * len(variable.shape)
  return NamedSharding(mesh, logical_to_spec(axes, variable.shape, mesh, rules))


def param_shardings(state: nnx.State, mesh: Mesh | None,
                    rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> dict[Any, Any]:
  """Shardings as a nested dict shaped like `nnx.to_pure_dict(state)` (abstract or concrete)."""
  out: dict[Any, Any] = {}
  for path, variable in nnx.to_flat_state(state):
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = variable_sharding(variable, mesh, rules)
  return out


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches split their leading dim over the data-parallel axes."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def put_batch(array: np.ndarray, mesh: Mesh | None) -> jax.Array:
  """An inference batch on the devices: split over the data axes on a mesh."""
  if mesh is None:
    return jnp.asarray(array)
  return jax.device_put(array, batch_sharding(mesh))


def round_up_to_data_parallel(batch_size: int, mesh: Mesh | None) -> int:
  """The smallest batch >= batch_size that splits evenly over the mesh's data axes."""
  data_parallel = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]
  return -(-batch_size // data_parallel) * data_parallel


def sync(name: str) -> None:
  """Barrier across processes (no-op on one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def initialize_distributed(mode: str = "auto", coordinator_address: str = "",
                           num_processes: int = -1, process_id: int = -1) -> None:
  """Starts jax.distributed where the platform needs it (TPU pods, multi-node GPU/SLURM).

  auto: when a coordinator is given or the environment shows several hosts; on: always
  (jax detects TPU / SLURM settings itself); off: never.
  """
  import os
  multi_host_env = (os.environ.get("SLURM_NTASKS", "1") not in ("", "1") or
                    len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1 or
                    bool(os.environ.get("JAX_COORDINATOR_ADDRESS")))
  if mode == "off" or (mode == "auto" and not (coordinator_address or multi_host_env)):
    return
  kwargs = {}
  if coordinator_address:
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  jax.distributed.initialize(**kwargs)
