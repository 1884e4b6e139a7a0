"""Every tensor of a model finite. One NaN or infinity in a weight (a damaged file, a flipped
byte, an adapter scale that overflows) makes every reward NaN, and nothing downstream can
tell a NaN reward from a judgment; so loads, merges and restores check each tensor and name
the first bad one."""
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from gram_jax.errors import GramError


def named_tensors(tree: Any) -> list[tuple[str, Any]]:
  """(path, array) of every floating-point leaf of a pytree, paths as `layers/0/attn/...`."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [("/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                    for k in path), leaf)
          for path, leaf in leaves
          if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)]


@jax.jit
def _finite_flags(arrays: list[jax.Array]) -> jax.Array:
  return jnp.stack([jnp.isfinite(x).all() for x in arrays])


def nonfinite(tensors: Iterable[tuple[str, Any]]) -> list[str]:
  """The names of the tensors holding a NaN or an infinity. Device arrays are reduced where
  they live, in one program (sharded ones by each device's own shards, one set of
  collectives in one order: separate programs per tensor deadlocked XLA's CPU collectives);
  one transfer brings the flags."""
  tensors = list(tensors)
  on_device = [i for i, (_, x) in enumerate(tensors) if isinstance(x, jax.Array)]
  flags = [isinstance(x, jax.Array) or bool(np.isfinite(x).all()) for _, x in tensors]
  if on_device:
    device_flags = jax.device_get(_finite_flags([tensors[i][1] for i in on_device]))
    for i, ok in zip(on_device, device_flags):
      flags[i] = bool(ok)
  return [name for (name, _), ok in zip(tensors, flags) if not ok]


def check_finite(tensors: Iterable[tuple[str, Any]], where: str) -> None:
  """Raises one line naming `where` and the first non-finite of the (name, array) pairs."""
  bad = nonfinite(tensors)
  if bad:
    more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
    raise GramError(f"{where}: tensor {bad[0]!r} holds NaN or infinite values{more}; the "
                    "weights are damaged")
