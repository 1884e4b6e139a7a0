"""Sections `mesh`, `dcn_mesh`, `rules` and `distributed`: how a run spreads over devices and
hosts; views: the device mesh and its data-parallel size."""
import jax
import ml_collections

from gram_jax import parallel


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
  c.dcn_mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  c.rules = tuple((name, axes) for name, axes in parallel.DEFAULT_RULES)


def add_distributed_defaults(c: ml_collections.ConfigDict) -> None:
  c.distributed = ml_collections.ConfigDict(dict(
      mode="auto", coordinator_address="", num_processes=-1, process_id=-1))


def device_mesh(c: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The run's device mesh: config.mesh within a slice, config.dcn_mesh across slices."""
  return parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())


def data_parallel_size(c: ml_collections.ConfigDict) -> int:
  shape = device_mesh(c).shape
  return shape["data"] * shape["fsdp"]
