"""Memory per device of the 8B presets' training step, from XLA's analysis of the step
compiled for the mesh, with no weight allocated: the figures the memory plan prints at
start-up, for the machines users have.

  python bench/memory_plan.py --archs=llama3.1-8b,qwen3-8b

Meshes: a TPU v5e-8 shape (8 devices of 16 GB, the state sharded over fsdp=8) and one
80 GB device; the batch is the presets' micro-batch (2 rows of 2,048 tokens a device, 16
micro-batches a step, remat full, bfloat16 compute), the LM objective. Variants: float32
weights and Adam moments (the presets), bfloat16 moments (`train.moment_dtype`), and
bfloat16 weights with bfloat16 moments (`model.param_dtype`: no float32 master copy),
LoRA rank 16 on every projection over frozen bfloat16 weights (`model.lora.rank`), and
QLoRA: the same adapters over an int8 or NF4 base (`model.lora.quantize`). The
devices are CPU devices standing in for the real ones (`--xla_force_host_platform_device_
count=8`): argument, output and alias bytes are the real mesh's; temporaries are what the
CPU compiler schedules, an estimate of an accelerator's. Prints one JSON line per plan.
"""
import argparse
import functools
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MESHES = {"v5e-8": (8, 16), "1x80GB": (1, 80)}  # devices, GB each
VARIANTS = {"float32 weights + float32 Adam": ("float32", "float32", 0, ""),
            "float32 weights + bfloat16 Adam": ("float32", "bfloat16", 0, ""),
            "bfloat16 weights + bfloat16 Adam": ("bfloat16", "bfloat16", 0, ""),
            "bfloat16 frozen weights + LoRA rank 16": ("bfloat16", "float32", 16, ""),
            "int8 frozen projections + LoRA rank 16": ("bfloat16", "float32", 16, "int8"),
            "nf4 frozen projections + LoRA rank 16": ("bfloat16", "float32", 16, "nf4")}


def plan(arch: str, devices: int, capacity_gb: float, param_dtype: str, moment_dtype: str,
         lora_rank: int, quantize: str, rows: int, seq_len: int) -> dict:
  import flax.nnx as nnx
  import jax
  import jax.numpy as jnp
  from gram_jax import configlib, parallel
  from gram_jax.models.config import architecture
  from gram_jax.models import lora
  from gram_jax.models.decoder import abstract_model
  from gram_jax.training import memory_plan, objectives, train_step
  from gram_jax.stages.common import optimizer_settings

  c = configlib.base_config("pretrain")
  c.train.moment_dtype = moment_dtype
  config = architecture(arch, dtype="bfloat16", param_dtype=param_dtype, remat="full",
                        attention="xla")
  mesh = parallel.make_mesh({"data": 1, "fsdp": devices, "tensor": 1},
                            devices=jax.devices()[:devices])
  tx, schedule = train_step.make_optimizer(optimizer_settings(c), 1000)
  graphdef, abstract = abstract_model(config)
  objective = functools.partial(objectives.causal_lm_loss, chunk_len=c.train.loss_chunk_len)
  adapters = (lora.Lora(tuple(lora.TARGETS), lora_rank, 2.0 * lora_rank, quantize=quantize)
              if lora_rank else None)
  trainer = train_step.Trainer.create(graphdef, abstract, tx, schedule, objective, mesh,
                                      tuple(c.rules), adapters)
  state = trainer.abstract_state(nnx.to_pure_dict(abstract))
  shape = (1, rows * devices, seq_len)  # one micro-batch: the step's memory is per micro
  batch = {name: jax.ShapeDtypeStruct(shape, dtype, sharding=trainer.batch_sharding)
           for name, dtype in (("input_ids", jnp.int32), ("segment_ids", jnp.int32),
                               ("positions", jnp.int32), ("targets", jnp.int32),
                               ("target_mask", jnp.float32))}
  begun = time.perf_counter()
  compiled = trainer.compile_step().lower(state, batch).compile()
  result = memory_plan.measure(compiled, state, batch, int(capacity_gb * memory_plan.GB))
  gb = lambda count: round(count / memory_plan.GB, 2)
  return {"arch": arch, "params": config.num_params(), "devices": devices,
          "capacity_gb": capacity_gb, "weights": param_dtype, "moments": moment_dtype,
          "lora_rank": lora_rank, "quantize": quantize,
          "parameters_gb": gb(result.params), "optimizer_gb": gb(result.optimizer),
          "temporaries_gb": gb(result.temporaries), "peak_gb": gb(result.peak),
          "fits": result.fits(), "compile_s": round(time.perf_counter() - begun, 1)}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--archs", default="llama3.1-8b,qwen3-8b")
  parser.add_argument("--meshes", default=",".join(MESHES))
  parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))))
  parser.add_argument("--rows", type=int, default=2, help="rows a device per micro-batch")
  parser.add_argument("--seq_len", type=int, default=2048)
  args = parser.parse_args()
  variants = list(VARIANTS.values())
  for arch in args.archs.split(","):
    for mesh in args.meshes.split(","):
      for index in args.variants.split(","):
        devices, capacity = MESHES[mesh]
        print(json.dumps({"mesh": mesh, **plan(arch, devices, capacity, *variants[int(index)],
                                                args.rows, args.seq_len)}), flush=True)


if __name__ == "__main__":
  main()
