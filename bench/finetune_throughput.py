"""GRAM verdict fine-tuning on real length distributions: the padding share of each batching,
and pairs/s of gram_jax packed and padded vs the official recipe's PyTorch trainer shape.

  python bench/finetune_throughput.py                          # HH-RLHF + RMB, CPU-sized model
  python bench/finetune_throughput.py --arch=llama3.2-1b --pairs=2048 --rows=8 --cutoff=2048
  python bench/finetune_throughput.py --model=smollm2 --pairs=48 --cutoff=1024 --padding_sets= \
      --torch_batch=8 --skip_fixed_width --score_pairs=48   # the real model on both sides

Data: ../shared/data HH-RLHF harmless-base test and RMB pairwise (all subsets), each pair in
both orders in the official GRAM judging prompt, tokenised with SmolLM2's tokenizer (the real
model shipped offline), trimmed at --cutoff. Padding shares are over every prompt of each set:
- fixed: one prompt a row, rows of --cutoff positions (gram_jax before packing);
- longest-in-batch: one prompt a row, each batch of --torch_batch as wide as its longest
  (Hugging Face's DataCollatorWithPadding, the official recipe);
- packed: prompts packed into rows of --cutoff, at most --max_pairs_per_row a row.
Throughput trains --pairs sampled pairs of HH-RLHF for one epoch on each side (same
architecture, AdamW, label smoothing 0.1, float32 on CPU / bf16 compute on GPU): gram_jax's
jitted step over packed and over fixed-width rows, and transformers + fused AdamW over
longest-in-batch padded batches with CE on the two label logits at the last position (with
`logits_to_keep=1`, so it too skips the LM head elsewhere). With --model (an HF directory, or
`smollm2` for SmolLM2-135M-Instruct) both sides start from that model's weights instead of a
random --arch; tokens/s counts the prompt tokens trained (padding excluded), the same on both
sides. --score_pairs times scoring of that many of the pairs too: `RewardModel.score_batch`
against the official-style PyTorch loop (bench/score_throughput.py), with the largest score
difference.
Prints one JSON object.
"""
import argparse
import functools
import json
import os
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch runs beside JAX
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import transformers  # noqa: E402

from gram_jax.data import encode, preference, records  # noqa: E402
from gram_jax.hf import smollm2  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data")
SETS = {"hh-rlhf": os.path.join(SHARED, "hh-rlhf", "harmless-base-test.jsonl.gz"),
        "rmb-pairwise": os.path.join(SHARED, "rmb", "Pairwise_set")}


def read_pairs(path: str) -> list[preference.PreferencePair]:
  """The set's pairs; records the parser rejects (HH-RLHF has empty replies) are skipped and
  counted on stderr."""
  pairs, report = records.read_records([path], preference.parse_preference_pair, "skip")
  print(path, report.summary(), file=sys.stderr)
  return pairs


def encode_both_orders(pairs, tokenizer, cutoff: int) -> encode.TokenizedSet:
  encoder = encode.JudgeEncoder(tokenizer, cutoff)
  triples = [t for p in pairs for t in ((p.prompt, p.chosen, p.rejected),
                                        (p.prompt, p.rejected, p.chosen))]
  ids, trimmed = encoder.encode_many(triples)
  return encode.TokenizedSet.build([
      encode.Example(np.asarray(x, np.int32), len(x), trimmed=bool(t), label=i % 2)
      for i, (x, t) in enumerate(zip(ids, trimmed))])


def padding_shares(data: encode.TokenizedSet, cutoff: int, torch_batch: int,
                   max_pairs: int, seed: int = 0) -> dict:
  from gram_jax.data import loader
  lengths = np.minimum(data.lengths(), cutoff)
  order = np.random.default_rng(seed).permutation(len(lengths))
  batches = [lengths[order[i:i + torch_batch]] for i in range(0, len(order), torch_batch)]
  longest = sum(len(b) * b.max() for b in batches)
  packed = loader.VerdictBatchIterator(data, 1, cutoff, pack=True, max_pairs_per_row=max_pairs)
  return {"prompts": len(lengths), "mean_tokens": float(lengths.mean()),
          "p50_tokens": float(np.median(lengths)), "p95_tokens": float(np.percentile(lengths, 95)),
          "trimmed": int(data.trimmed),
          "fixed": 1 - lengths.sum() / (len(lengths) * cutoff),
          "longest_in_batch": float(1 - lengths.sum() / longest),
          "packed": packed.padding_fraction(),
          "packed_rows": packed.rows_per_epoch()}


def model_path(name: str) -> str:
  """An HF directory: `smollm2` is SmolLM2-135M-Instruct (built offline on first use)."""
  return smollm2.smollm2_instruct() if name == "smollm2" else name


def gram_jax_model(args, mesh):
  """(graphdef, abstract state, sharded params): --model's weights, else a random --arch."""
  import jax
  from flax import nnx
  from gram_jax import parallel
  from gram_jax.models.config import architecture
  from gram_jax.models.decoder import Decoder, abstract_model
  from gram_jax.pretrained import load_pretrained
  on_cpu = jax.default_backend() == "cpu"
  dtype = "float32" if on_cpu else "bfloat16"
  if args.model:
    model = load_pretrained(model_path(args.model), mesh=mesh, compute_dtype=dtype)
    model.config = model.config.replace(remat=args.remat)
    graphdef, abstract = abstract_model(model.config)
    return graphdef, abstract, nnx.to_pure_dict(nnx.state(model))
  model_config = architecture(args.arch, vocab_size=args.vocab, dtype=dtype, remat=args.remat)
  graphdef, abstract = abstract_model(model_config)
  params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(Decoder(model_config, nnx.Rngs(0)))),
                   out_shardings=parallel.param_shardings(abstract, mesh))()
  return graphdef, abstract, params


def gram_jax_epoch(data: encode.TokenizedSet, args, label_ids, pack: bool) -> dict:
  import jax
  from gram_jax import configlib, parallel
  from gram_jax.data import loader
  from gram_jax.training import objectives, train_step
  from gram_jax.stages.common import optimizer_settings
  mesh = parallel.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  c = configlib.base_config("finetune")
  graphdef, abstract, params = gram_jax_model(args, mesh)
  tx, schedule = train_step.make_optimizer(optimizer_settings(c), 1000)
  objective = functools.partial(objectives.verdict_loss, label_ids=label_ids, smoothing=0.1)
  trainer = train_step.Trainer.create(graphdef, abstract, tx, schedule, objective, mesh, c.rules)
  state = trainer.init_state(params, 0)
  rows = args.rows if pack else args.torch_batch
  batches = loader.VerdictBatchIterator(data, rows, args.cutoff, pack=pack,
                                        max_pairs_per_row=args.max_pairs_per_row)
  step = trainer.compile_step()
  state, metrics = step(state, trainer.put_batch(next(batches)))  # compile, not timed
  jax.block_until_ready(metrics)
  batches.restore({"epoch": 0, "cursor": 0})
  prompts, tokens, steps, start = 0, 0, 0, time.perf_counter()
  while batches.epoch == 0 and batches.cursor < len(data):  # the last step may wrap
    batch = next(batches)
    prompts += int(batch["weights"].sum())
    tokens += int((batch["segment_ids"] > 0).sum())
    state, metrics = step(state, trainer.put_batch(batch))
    steps += 1
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  return {"rows_per_step": rows, "row_len": args.cutoff, "steps": steps, "prompts": prompts,
          "tokens": tokens, "tokens_per_second": tokens / seconds,
          "seconds": seconds, "prompts_per_second": prompts / seconds,
          "pairs_per_second": prompts / 2 / seconds, "final_loss": float(metrics["loss"])}


def torch_epoch(data: encode.TokenizedSet, args, label_ids) -> dict:
  import torch
  import transformers
  from gram_jax.hf.config import hf_config_dict
  from gram_jax.models.config import architecture
  cuda = torch.cuda.is_available()
  device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
  if args.model:
    model = transformers.AutoModelForCausalLM.from_pretrained(model_path(args.model),
                                                              dtype=dtype).to(device)
  else:
    config = transformers.AutoConfig.for_model(**hf_config_dict(
        architecture(args.arch, vocab_size=args.vocab)))
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
  if args.remat != "none":
    model.gradient_checkpointing_enable()
  model.train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
  order = np.random.default_rng(0).permutation(len(data))
  labels = torch.tensor(label_ids, device=device)

  def step(indices):
    examples = [data.example(i)[0][-args.cutoff:] for i in indices]
    width = max(len(x) for x in examples)
    ids = torch.zeros((len(examples), width), dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, x in enumerate(examples):  # left padding: the verdict position is the last one
      ids[r, width - len(x):] = torch.from_numpy(x.astype(np.int64))
      mask[r, width - len(x):] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   logits_to_keep=1).logits[:, -1]
    target = torch.tensor([int(data.labels[i]) for i in indices], device=device)
    loss = torch.nn.functional.cross_entropy(logits[:, labels].float(), target,
                                             label_smoothing=0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  step(order[:args.torch_batch])  # warm-up, not timed
  sync()
  start = time.perf_counter()
  for i in range(0, len(order), args.torch_batch):
    loss = step(order[i:i + args.torch_batch])
  sync()
  seconds = time.perf_counter() - start
  tokens = int(np.minimum(data.lengths(), args.cutoff).sum())
  return {"rows_per_step": args.torch_batch, "row_len": "longest in batch",
          "steps": -(-len(order) // args.torch_batch), "prompts": len(order),
          "tokens": tokens, "tokens_per_second": tokens / seconds,
          "seconds": seconds, "prompts_per_second": len(order) / seconds,
          "pairs_per_second": len(order) / 2 / seconds, "final_loss": float(loss.detach())}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--arch", default="tiny")
  parser.add_argument("--pairs", type=int, default=128, help="HH-RLHF pairs trained (0: none)")
  parser.add_argument("--cutoff", type=int, default=1024)
  parser.add_argument("--rows", type=int, default=4, help="packed rows a step")
  parser.add_argument("--torch_batch", type=int, default=16, help="prompts a padded step")
  parser.add_argument("--max_pairs_per_row", type=int, default=16)
  parser.add_argument("--remat", default="none")
  parser.add_argument("--padding_sets", default=",".join(SETS), help="'' skips the table")
  parser.add_argument("--model", default="", help="HF directory or 'smollm2': real weights")
  parser.add_argument("--score_pairs", type=int, default=0, help="also time scoring them")
  parser.add_argument("--skip_fixed_width", action="store_true",
                      help="no one-prompt-a-row epoch (--torch_batch rows of --cutoff each)")
  args = parser.parse_args()
  tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2.smollm2_instruct())
  args.vocab = len(tokenizer)
  report = {"tokenizer": "SmolLM2-135M-Instruct", "cutoff": args.cutoff, "padding": {}}
  for name in filter(None, args.padding_sets.split(",")):
    pairs = read_pairs(SETS[name])
    data = encode_both_orders(pairs, tokenizer, args.cutoff)
    report["padding"][name] = padding_shares(data, args.cutoff, args.torch_batch,
                                             args.max_pairs_per_row)
    print(name, json.dumps(report["padding"][name]), file=sys.stderr, flush=True)
  if args.pairs:
    pairs = read_pairs(SETS["hh-rlhf"])
    keep = np.random.default_rng(0).choice(len(pairs), args.pairs, replace=False)
    data = encode_both_orders([pairs[i] for i in sorted(keep)], tokenizer, args.cutoff)
    label_ids = tuple(encode.JudgeEncoder(tokenizer, args.cutoff).label_ids)
    report["throughput"] = {"arch": args.model or args.arch, "pairs": args.pairs,
                            "gram_jax_packed": gram_jax_epoch(data, args, label_ids, True)}
    if not args.skip_fixed_width:
      report["throughput"]["gram_jax_fixed_width"] = gram_jax_epoch(data, args, label_ids, False)
    report["throughput"]["torch_longest_in_batch"] = torch_epoch(data, args, label_ids)
    if args.score_pairs:
      # Pairs that fit the cutoff untrimmed: the PyTorch loop tokenises the full prompt text.
      encoder = encode.JudgeEncoder(tokenizer, args.cutoff)
      triples = [(p.prompt, p.chosen, p.rejected) for p in (pairs[i] for i in sorted(keep))]
      fit = [t for t in triples
             if not any(encoder(*o)[1] for o in (t, (t[0], t[2], t[1])))]
      report["scoring"] = scoring(fit[:args.score_pairs], tokenizer, args)
  print(json.dumps(report, indent=2))


def scoring(pairs, tokenizer, args) -> dict:
  """Pairs/s of RewardModel.score_batch and of the official-style PyTorch loop on the same
  pairs and weights (--model, else the random --arch saved once), both orders."""
  import tempfile
  import jax
  from flax import nnx
  import gram_jax
  from gram_jax import parallel
  from gram_jax.inference.reward import RewardModel
  from score_throughput import torch_scores
  graphdef, _, params = gram_jax_model(args, parallel.make_mesh({"data": 1, "fsdp": -1,
                                                                 "tensor": 1}))
  model = nnx.merge(graphdef, params)
  reward = RewardModel(model, tokenizer, max_len=args.cutoff, batch_size=args.torch_batch)
  reward.score_batch(pairs)  # compiles every bucket shape once
  start = time.perf_counter()
  ours = reward.score_batch(pairs)
  seconds = time.perf_counter() - start
  with tempfile.TemporaryDirectory() as folder:
    path = model_path(args.model) if args.model else folder
    if not args.model:
      gram_jax.save_pretrained(model, folder, tokenizer=tokenizer)
    torch_seconds, theirs = torch_scores(path, pairs, args.torch_batch, args.cutoff)
  return {"pairs": len(pairs), "device": jax.devices()[0].device_kind,
          "gram_jax_pairs_per_second": len(pairs) / seconds,
          "torch_pairs_per_second": len(pairs) / torch_seconds,
          "speedup": torch_seconds / seconds,
          "max_abs_score_difference": float(np.abs(ours - theirs).max())}


if __name__ == "__main__":
  main()
