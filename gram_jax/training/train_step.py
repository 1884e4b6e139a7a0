"""The generic sharded trainer: optimizer, state, and the jitted train step.

State is a plain dict of arrays {params, opt_state, step, rng} so Orbax saves it as-is. The step
is `jax.jit` with explicit in/out shardings and donated state; micro-batches are accumulated
with `lax.scan` and the loss is normalised by the units (tokens or pairs) of the whole batch.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gram_jax import parallel
from gram_jax.models import lora as lora_lib
from gram_jax.models.decoder import Decoder
from gram_jax.training.settings import Optimizer

Objective = Callable[[Decoder, dict], tuple[jax.Array, jax.Array]]
State = dict[str, Any]


def make_schedule(train: Optimizer, total_steps: int) -> optax.Schedule:
  """Linear warmup to the peak rate, then cosine decay to `end_lr_ratio` of it."""
  warmup = int(round(train.warmup_ratio * total_steps))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train.learning_rate, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=train.learning_rate * train.end_lr_ratio)


def make_optimizer(train: Optimizer, total_steps: int,
                   moment_dtype: str | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with global-norm clipping; no weight decay on vectors (norm scales, biases); its
  moments stored in `moment_dtype` (default `train.moment_dtype`)."""
  moment_dtype = moment_dtype or train.moment_dtype
  schedule = make_schedule(train, total_steps)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  tx = optax.chain(
      optax.clip_by_global_norm(train.max_grad_norm),
      optax.adamw(schedule, b1=train.b1, b2=train.b2, eps=train.eps,
                  weight_decay=train.weight_decay, mask=decay_mask))
  if moment_dtype != "float32":
    tx = state_stored_in(tx, jnp.dtype(moment_dtype))
  return tx, schedule


def state_stored_in(tx: optax.GradientTransformation,
                    dtype: jnp.dtype) -> optax.GradientTransformation:
  """`tx` with its floating state kept in `dtype` between steps and updated in float32:
  bfloat16 Adam moments halve the optimizer's memory (4 bytes a parameter instead of 8)."""
  def cast(tree: Any, to: jnp.dtype) -> Any:
    return jax.tree.map(
        lambda x: x.astype(to) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

  def update(updates, state, params=None):
    updates, state = tx.update(updates, cast(state, jnp.float32), params)
    return updates, cast(state, dtype)

  return optax.GradientTransformation(lambda params: cast(tx.init(params), dtype), update)


@dataclasses.dataclass
class Trainer:
  """Holds what the step needs that is not data: graph, optimizer, shardings.

  With `lora`, the trained `params` are the adapters (all a checkpoint holds) and the base
  weights ride along in the state as `frozen` (quantized for QLoRA): never updated, never
  saved. `model_shardings` are those of the model's own weights."""
  graphdef: nnx.GraphDef
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  objective: Objective
  mesh: Mesh
  state_shardings: State
  batch_sharding: NamedSharding
  model_shardings: dict
  lora: lora_lib.Lora | None = None

  @classmethod
  def create(cls, graphdef: nnx.GraphDef, abstract_state: nnx.State,
             tx: optax.GradientTransformation, schedule: optax.Schedule, objective: Objective,
             mesh: Mesh, rules, lora: lora_lib.Lora | None = None) -> "Trainer":
    params_sharding = parallel.param_shardings(abstract_state, mesh, rules)
    trained_sharding = params_sharding
    abstract_params = nnx.to_pure_dict(abstract_state)
    if lora:
      trained_sharding = lora_lib.adapter_shardings(params_sharding, lora.targets)
      abstract_params = _abstract_adapters(abstract_params, lora)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_sharding = optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract_opt, trained_sharding,
        transform_non_params=lambda _: replicated)
    shardings = {"params": trained_sharding, "opt_state": opt_sharding,
                 "step": replicated, "rng": replicated}
    if lora:
      shardings["frozen"] = lora_lib.base_shardings(
          params_sharding, nnx.to_pure_dict(abstract_state), lora)
    batch_sharding = NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp")))
    return cls(graphdef, tx, schedule, objective, mesh, shardings, batch_sharding,
               params_sharding, lora)

  def init_state(self, params: dict, seed: int) -> State:
    """Optimizer state created directly on its shardings; with LoRA, `params` are the base
    weights and the adapters are made here from `seed`."""
    frozen = None
    if self.lora:
      frozen = self.frozen_base(params)
      params = jax.jit(lambda base: lora_lib.init_adapters(
          base, self.lora.targets, self.lora.rank, jax.random.key(seed)),
          out_shardings=self.state_shardings["params"])(params)
    opt_state = jax.jit(self.tx.init, out_shardings=self.state_shardings["opt_state"])(params)
    rng = jax.random.key_data(jax.random.key(seed))
    state = {"params": params, "opt_state": opt_state,
             "step": jax.device_put(jnp.zeros((), jnp.int32), self.state_shardings["step"]),
             "rng": jax.device_put(rng, self.state_shardings["rng"])}
    return {**state, "frozen": frozen} if self.lora else state

  def frozen_base(self, params: dict) -> dict:
    """The base weights as the state holds them under LoRA (quantized for QLoRA)."""
    return jax.jit(lambda base: lora_lib.quantize_base(base, self.lora),
                   out_shardings=self.state_shardings["frozen"])(params)

  def abstract_state(self, abstract_params: dict) -> State:
    """Shape/dtype/sharding of the full state, the target for restoring a checkpoint (with
    LoRA, `abstract_params` are the base's: the state's are the adapters, and `frozen` is
    there for compiling, never restored)."""
    trained = _abstract_adapters(abstract_params, self.lora) if self.lora else abstract_params
    shapes = {"params": trained,
              "opt_state": jax.eval_shape(self.tx.init, trained),
              "step": jax.ShapeDtypeStruct((), jnp.int32),
              "rng": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))}
    if self.lora:
      shapes["frozen"] = jax.eval_shape(lambda base: lora_lib.quantize_base(base, self.lora),
                                        abstract_params)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, self.state_shardings)

  def full_params(self, state: State) -> dict:
    """The model's weights: the params, or with LoRA the base merged with the adapters."""
    if not self.lora:
      return state["params"]
    return jax.jit(lora_lib.merge, static_argnums=2, out_shardings=self.model_shardings)(
        state["frozen"], state["params"], self.lora)

  def _step(self, state: State, batch: dict) -> tuple[State, dict]:
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    def loss_fn(params, micro, index):
      if self.lora:  # the adapters' dropout draws a new mask each step and micro-batch
        key = jax.random.key_data(jax.random.fold_in(step_key, index))
        params = lora_lib.attach(state["frozen"], params, self.lora, key)
      return self.objective(nnx.merge(self.graphdef, params), micro)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    params = state["params"]
    micro_batches = jax.tree.leaves(batch)[0].shape[0]
    # The first micro-batch starts the sums: no zero-filled gradient tree to write and add
    # (on CPU that memset and add cost as much as the optimizer update).
    (loss_sum, units), grads = grad_fn(params, jax.tree.map(lambda x: x[0], batch), 0)
    grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    if micro_batches > 1:
      def accumulate(carry, micro_and_index):
        grads_sum, loss_sum, units = carry
        (loss, count), grads = grad_fn(params, *micro_and_index)
        grads_sum = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_sum, grads)
        return (grads_sum, loss_sum + loss, units + count), None

      (grads, loss_sum, units), _ = jax.lax.scan(
          accumulate, (grads, loss_sum, units),
          (jax.tree.map(lambda x: x[1:], batch), jnp.arange(1, micro_batches)))
    denominator = jnp.maximum(units, 1.0)
    grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grads, params)
    loss = loss_sum / denominator
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(_):
      updates, opt_state = self.tx.update(grads, state["opt_state"], params)
      return optax.apply_updates(params, updates), opt_state

    # A non-finite step keeps the old state: a branch, not a select over every parameter and
    # moment (three more passes over the whole state on every step).
    params, opt_state = jax.lax.cond(finite, update, lambda _: (params, state["opt_state"]),
                                     None)
    new_state = {**state, "params": params, "opt_state": opt_state,
                 "step": state["step"] + 1}
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": self.schedule(state["step"]),
               "units": units, "finite": finite}
    return new_state, metrics

  def compile_step(self) -> Callable[[State, dict], tuple[State, dict]]:
    replicated = NamedSharding(self.mesh, PartitionSpec())
    return jax.jit(self._step_on_mesh,
                   in_shardings=(self.state_shardings, self.batch_sharding),
                   out_shardings=(self.state_shardings, replicated), donate_argnums=0,
                   compiler_options=parallel.compiler_options())

  def _step_on_mesh(self, state: State, batch: dict) -> tuple[State, dict]:
    """Traces under the mesh, so kernels that map over it (splash's shard_map) find it."""
    with jax.sharding.use_abstract_mesh(self.mesh.abstract_mesh):
      return self._step(state, batch)

  def put_batch(self, host_batch: dict) -> dict:
    """Assembles the global batch from each host's rows (axis 1 is the data-parallel axis)."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), host_batch)


def _abstract_adapters(abstract_params: dict, lora: lora_lib.Lora) -> dict:
  return jax.eval_shape(lambda: lora_lib.init_adapters(abstract_params, lora.targets,
                                                       lora.rank, jax.random.key(0)))
