"""Training throughput (tokens/s, MFU) of gram_jax's jitted step vs PyTorch eager.

  python bench/train_throughput.py --arch=llama3.2-1b --batch=8 --seq=2048 --steps=10
  python bench/train_throughput.py --arch=tiny --batch=8 --seq=256    # CPU smoke run

Both sides train the same architecture on the same random tokens with AdamW: gram_jax with
float32 master weights and bf16 compute on GPU (float32 on CPU), transformers + torch.optim
AdamW in bf16 on GPU (float32 on CPU). Each side runs in its own process. Prints one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench_jax(args) -> dict:
  import jax
  import numpy as np
  from gram_jax import configlib, parallel
  from gram_jax.training import flops, objectives, train_step
  from gram_jax.models.decoder import abstract_model
  from gram_jax.models.config import architecture
  from gram_jax.models.decoder import Decoder
  from flax import nnx
  on_cpu = jax.default_backend() == "cpu"
  model_config = architecture(args.arch, dtype="float32" if on_cpu else "bfloat16",
                              remat=args.remat, attention=args.attention)
  mesh = parallel.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  c = configlib.base_config("pretrain")
  graphdef, abstract = abstract_model(model_config)
  tx, schedule = train_step.make_optimizer(c.train, args.steps + args.warmup)
  trainer = train_step.Trainer.create(graphdef, abstract, tx, schedule,
                                      objectives.causal_lm_loss, mesh, c.rules)
  shardings = parallel.param_shardings(abstract, mesh)
  params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(Decoder(model_config, nnx.Rngs(0)))),
                   out_shardings=shardings)()
  state = trainer.init_state(params, 0)
  rng = np.random.default_rng(0)
  shape = (1, args.batch, args.seq)
  ids = rng.integers(0, model_config.vocab_size, shape).astype(np.int32)
  batch = trainer.put_batch({
      "input_ids": ids, "segment_ids": np.ones(shape, np.int32),
      "positions": np.broadcast_to(np.arange(args.seq, dtype=np.int32), shape).copy(),
      "targets": np.roll(ids, -1, axis=-1), "target_mask": np.ones(shape, np.float32)})
  step = trainer.compile_step()
  for _ in range(args.warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / args.steps
  tokens = args.batch * args.seq
  peak = flops.peak_flops_per_device()
  mfu = flops.training_flops_per_token(model_config, args.seq) * tokens / seconds / (
      peak * jax.device_count()) if peak else None
  return {"step_seconds": seconds, "tokens_per_second": tokens / seconds, "mfu": mfu,
          "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
          "params": model_config.num_params(), "compute_dtype": model_config.dtype, "remat": model_config.remat,
          "attention": model_config.attention,
          "final_loss": float(metrics["loss"])}


def bench_torch(args) -> dict:
  import torch
  import transformers
  from gram_jax.hf.config import hf_config_dict
  from gram_jax.models.config import architecture
  cuda = torch.cuda.is_available()
  dtype = torch.bfloat16 if cuda else torch.float32
  model_config = architecture(args.arch)
  config = transformers.AutoConfig.for_model(**hf_config_dict(model_config))
  device = "cuda" if cuda else "cpu"
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
  if args.remat != "none":
    model.gradient_checkpointing_enable()
  model.train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda)
  ids = torch.randint(0, model_config.vocab_size, (args.batch, args.seq), device=device)

  def step():
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  for _ in range(args.warmup):
    step()
  sync()
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = step()
  sync()
  seconds = (time.perf_counter() - start) / args.steps
  return {"step_seconds": seconds, "tokens_per_second": args.batch * args.seq / seconds,
          "device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": str(dtype),
          "attn_implementation": model.config._attn_implementation,
          "final_loss": float(loss.detach())}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="tiny")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--remat", default="none")
  parser.add_argument("--attention", default="auto", help="auto | xla | cudnn (gram_jax side)")
  parser.add_argument("--side", default="both", choices=["both", "jax", "torch"])
  args = parser.parse_args()
  if args.side != "both":
    result = (bench_jax if args.side == "jax" else bench_torch)(args)
    print(json.dumps(result))
    return
  report = {"arch": args.arch, "batch": args.batch, "seq": args.seq, "steps": args.steps,
            "gram_jax": run_side(args, "jax"), "torch_eager": run_side(args, "torch")}
  report["speedup"] = (report["gram_jax"]["tokens_per_second"] /
                       report["torch_eager"]["tokens_per_second"])
  print(json.dumps(report, indent=2))


def run_side(args, side: str) -> dict:
  """Each side in its own process: JAX reserves most of the GPU's memory for its pool."""
  flags = [f"--{k}={v}" for k, v in vars(args).items() if k != "side"]
  out = subprocess.run([sys.executable, os.path.abspath(__file__), *flags, f"--side={side}"],
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
  main()
