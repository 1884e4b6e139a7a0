"""Training step time, tokens/s, MFU and peak memory: gram_jax's jitted step vs transformers
with fused AdamW, eager and `torch.compile`d, at equal remat; and how both grow with the
sequence length.

  python bench/train_throughput.py --arch=llama3.2-1b --batch=8 --seq=2048 --steps=10
  python bench/train_throughput.py --arch=llama3.2-1b --batch=1 --seqs=512,1024,2048,4096,8192
  JAX_PLATFORMS=cpu python bench/train_throughput.py --arch=tiny --batch=4 --seqs=512,1024,2048
  JAX_PLATFORMS=cpu python bench/train_throughput.py --arch=small --batch=4 --seq=256 --lora_rank=16

Both sides train the same architecture on the same number of random tokens with AdamW and
global-norm clipping: gram_jax with float32 master weights and bf16 compute on GPU (float32
on CPU) and its chunked LM loss (`--loss_chunk_len`); transformers in bf16 on GPU (float32 on
CPU) with `torch.optim.AdamW(fused=True)`. With --lora_rank, both sides train rank-r adapters
on every projection over the frozen model (gram_jax's `model.lora`, optionally over an int8 /
nf4 base with --quantize; PEFT's LoRA on the torch side, its optimizer over the adapters).
Every side and length runs in its own process.
Step time: the median of --steps timed steps; with --repeats, each side runs that many
processes per length (sides alternating) and keeps its fastest. Peak memory: the device's
peak allocation on GPU; on CPU the process's peak RSS growth over its state after imports.
Prints one JSON object.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIDES = ("gram_jax", "torch_eager", "torch_compile")


def _rss_kb() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _timed(step, warmup: int, steps: int, sync) -> tuple[float, object]:
  """The median of `steps` timed steps after `warmup` untimed ones: one slow step (another
  process on a shared core) moves a median far less than a mean."""
  for _ in range(warmup):
    sync(step())
  times, out = [], None
  for _ in range(steps):
    start = time.perf_counter()
    out = step()
    sync(out)
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def bench_jax(args, seq: int, baseline_kb: int) -> dict:
  import functools
  import jax
  import numpy as np
  from flax import nnx
  from gram_jax import configlib, parallel
  from gram_jax.models import lora
  from gram_jax.models.config import architecture
  from gram_jax.models.decoder import Decoder, abstract_model
  from gram_jax.training import flops, objectives, train_step
  from gram_jax.stages.common import optimizer_settings
  on_cpu = jax.default_backend() == "cpu"
  model_config = architecture(args.arch, dtype="float32" if on_cpu else "bfloat16",
                              remat=args.remat, attention=args.attention,
                              attention_block_q=args.block_q, attention_block_kv=args.block_kv)
  mesh = parallel.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  c = configlib.base_config("pretrain")
  graphdef, abstract = abstract_model(model_config)
  tx, schedule = train_step.make_optimizer(optimizer_settings(c), args.steps + args.warmup)
  objective = functools.partial(objectives.causal_lm_loss, chunk_len=args.loss_chunk_len)
  adapters = (lora.Lora(tuple(lora.TARGETS), args.lora_rank, 2.0 * args.lora_rank,
                        quantize=args.quantize) if args.lora_rank else None)
  trainer = train_step.Trainer.create(graphdef, abstract, tx, schedule, objective, mesh, c.rules,
                                      adapters)
  shardings = parallel.param_shardings(abstract, mesh)
  params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(Decoder(model_config, nnx.Rngs(0)))),
                   out_shardings=shardings)()
  state = trainer.init_state(params, 0)
  rng = np.random.default_rng(0)
  shape = (1, args.batch, seq)
  ids = rng.integers(0, model_config.vocab_size, shape).astype(np.int32)
  batch = trainer.put_batch({
      "input_ids": ids, "segment_ids": np.ones(shape, np.int32),
      "positions": np.broadcast_to(np.arange(seq, dtype=np.int32), shape).copy(),
      "targets": np.roll(ids, -1, axis=-1), "target_mask": np.ones(shape, np.float32)})
  compiled = trainer.compile_step()
  holder = {"state": state}

  def step():
    holder["state"], metrics = compiled(holder["state"], batch)
    return metrics

  seconds, metrics = _timed(step, args.warmup, args.steps, jax.block_until_ready)
  if args.profile_dir:  # a trace of 3 more steps for TensorBoard / XProf
    with jax.profiler.trace(os.path.join(args.profile_dir, f"seq{seq}")):
      _timed(step, 0, 3, jax.block_until_ready)
  tokens = args.batch * seq
  peak = flops.peak_flops_per_device()
  mfu = flops.training_flops_per_token(model_config, seq) * tokens / seconds / (
      peak * jax.device_count()) if peak else None
  stats = jax.devices()[0].memory_stats() if not on_cpu else None
  peak_bytes = (stats["peak_bytes_in_use"] if stats else
                (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) * 1024)
  return {"step_seconds": seconds, "tokens_per_second": tokens / seconds, "mfu": mfu,
          "peak_memory_gb": peak_bytes / 1e9, "device": jax.devices()[0].device_kind,
          "params": model_config.num_params(), "compute_dtype": model_config.dtype,
          "remat": model_config.remat, "attention": model_config.attention,
          "blocks": [model_config.attention_block_q, model_config.attention_block_kv],
          "loss_chunk_len": args.loss_chunk_len, "lora_rank": args.lora_rank,
          "quantize": args.quantize, "final_loss": float(metrics["loss"])}


def bench_torch(args, seq: int, baseline_kb: int, compiled: bool) -> dict:
  import torch
  import transformers
  from gram_jax.hf.config import hf_config_dict
  from gram_jax.models.config import architecture
  cuda = torch.cuda.is_available()
  dtype = torch.bfloat16 if cuda else torch.float32
  config = transformers.AutoConfig.for_model(**hf_config_dict(architecture(args.arch)))
  device = "cuda" if cuda else "cpu"
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
  if args.remat != "none":
    model.gradient_checkpointing_enable()
  if args.lora_rank:
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
  model.train()
  trained = [p for p in model.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(trained, lr=1e-3, fused=True)
  ids = torch.randint(0, config.vocab_size, (args.batch, seq), device=device)
  forward = torch.compile(model) if compiled else model

  def step():
    loss = forward(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  sync = (lambda _: torch.cuda.synchronize()) if cuda else (lambda _: None)
  if cuda:
    torch.cuda.reset_peak_memory_stats()
  seconds, loss = _timed(step, args.warmup, args.steps, sync)
  peak_bytes = (torch.cuda.max_memory_allocated() if cuda else
                (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) * 1024)
  return {"step_seconds": seconds, "tokens_per_second": args.batch * seq / seconds,
          "peak_memory_gb": peak_bytes / 1e9,
          "device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": str(dtype),
          "attn_implementation": model.config._attn_implementation,
          "torch_compile": compiled, "optimizer": "AdamW(fused=True)",
          "lora_rank": args.lora_rank, "peft": bool(args.lora_rank),
          "final_loss": float(loss.detach())}


def run_one(args) -> dict:
  if args.side == "gram_jax":
    import jax
    jax.devices()  # the runtime is up before the baseline
  else:
    import torch  # noqa: F401  (imported before the baseline)
    import transformers  # noqa: F401
  baseline_kb = _rss_kb()
  if args.side == "gram_jax":
    return bench_jax(args, args.seq, baseline_kb)
  return bench_torch(args, args.seq, baseline_kb, compiled=args.side == "torch_compile")


def run_side(args, side: str, seq: int) -> dict:
  """One side at one length in its own process (JAX reserves most of a GPU for its pool)."""
  own = ("side", "seq", "seqs", "repeats")
  flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in own]
  result = subprocess.run([sys.executable, os.path.abspath(__file__), *flags, f"--side={side}",
                           f"--seq={seq}"], capture_output=True, text=True)
  if result.returncode != 0:
    tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
    return {"error": tail[0][:300]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def fastest(results: list[dict]) -> dict:
  """The run with the shortest median step, with every run's median beside it."""
  timed = [r for r in results if "step_seconds" in r]
  if not timed:
    return results[0]
  best = min(timed, key=lambda r: r["step_seconds"])
  return {**best, "runs_step_seconds": [r["step_seconds"] for r in timed]}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="tiny")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--seqs", default="", help="comma-separated lengths: the growth table")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1, help="processes per side and length")
  parser.add_argument("--remat", default="none", help="none | dots | full (torch: checkpointing)")
  parser.add_argument("--attention", default="auto", help="auto | xla | flash | splash | cudnn (gram_jax side)")
  parser.add_argument("--block_q", type=int, default=256, help="flash / splash query block")
  parser.add_argument("--block_kv", type=int, default=256, help="flash / splash key block")
  parser.add_argument("--loss_chunk_len", type=int, default=512)
  parser.add_argument("--lora_rank", type=int, default=0, help="0: full training")
  parser.add_argument("--quantize", default="", help="gram_jax side with --lora_rank: int8 | nf4")
  parser.add_argument("--peers", default=",".join(SIDES))
  parser.add_argument("--profile_dir", default="", help="gram_jax side: write a profiler trace")
  parser.add_argument("--side", default="", choices=("",) + SIDES)
  args = parser.parse_args()
  if args.side:
    print(json.dumps(run_one(args)))
    return
  seqs = [int(s) for s in args.seqs.split(",")] if args.seqs else [args.seq]
  report = {"arch": args.arch, "batch": args.batch, "steps": args.steps, "remat": args.remat,
            "lora_rank": args.lora_rank, "quantize": args.quantize,
            "results": []}
  sides = args.peers.split(",")
  for seq in seqs:
    # Sides alternate within each repeat, so a slow spell of a shared machine falls on all of
    # them; each side keeps its fastest run.
    runs = {side: [] for side in sides}
    for _ in range(args.repeats):
      for side in sides:
        runs[side].append(run_side(args, side, seq))
    row = {"seq": seq, **{side: fastest(results) for side, results in runs.items()}}
    for peer in ("torch_eager", "torch_compile"):  # gram_jax may not be among --peers
      if "tokens_per_second" in row.get(peer, {}) and \
          "tokens_per_second" in row.get("gram_jax", {}):
        row[f"speedup_vs_{peer}"] = (row["gram_jax"]["tokens_per_second"] /
                                     row[peer]["tokens_per_second"])
    report["results"].append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
