"""SmolLM2-135M GRAM fine-tuning on real pairs: full fine-tuning vs LoRA vs QLoRA, loss curves
side by side, with step time and checkpoint size.

  python bench/lora_curves.py --workdir=/tmp/lora_curves [--scale=cpu] [--rank=16]

Every variant trains the verdict loss (label smoothing 0.1, both A/B orders) on the same
pairs, steps and batch as `bench/replicate_gram.py --scale=...`'s GRAM ft row: HH-RLHF
harmless plus RMB pairwise outside the held-out categories, none asking an evaluation
question. Full fine-tuning uses that row's learning rate; the adapters use `--lora_lr`
(adapters start at a zero update and usually take a 10× higher rate, as in PEFT's recipes).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from replicate_data import SHARED, native_eval_sets, questions, train_set  # noqa: E402
from replicate_gram import SCALES, main_stage, train_overrides  # noqa: E402

from gram_jax.hf.smollm2 import smollm2_instruct  # noqa: E402


def variants(rank: int, lora_lr: float, lr: float) -> dict[str, tuple[float, list[str]]]:
  adapters = [f"--config.model.lora.rank={rank}", f"--config.model.lora.alpha={2 * rank}"]
  return {"full": (lr, []),
          f"LoRA r{rank}": (lora_lr, adapters),
          f"QLoRA r{rank} (nf4 base)": (lora_lr, adapters + ["--config.model.lora.quantize=nf4"])}


def directory_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
  parser.add_argument("--rank", type=int, default=16)
  parser.add_argument("--lora_lr", type=float, default=2e-4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  if not os.path.isdir(SHARED):
    sys.exit(f"{SHARED}: the shared data folder is missing")
  scale = SCALES[args.scale]
  asked = set().union(*map(questions, native_eval_sets().values()))
  train = train_set(os.path.join(args.workdir, "train_data"), scale, args.seed, asked)
  curves, rows = {}, []
  for name, (lr, flags) in variants(args.rank, args.lora_lr, scale.learning_rate).items():
    workdir = main_stage("finetune", os.path.join(args.workdir, name.split()[0].lower()),
                         f"--config.model.path={smollm2_instruct()}",
                         "--config.train.label_smoothing=0.1", *flags,
                         *train_overrides(scale, args.seed, train, lr, 2))
    metrics = [json.loads(line) for line in open(os.path.join(workdir, "train_metrics.jsonl"))]
    curves[name] = [m["loss"] for m in metrics]
    seconds = [m["step_seconds"] for m in metrics[1:]]  # the first step includes compiling
    rows.append(f"| {name} | {lr:g} | {curves[name][0]:.3f} | {curves[name][-1]:.3f} | "
                f"{np.mean(curves[name][-5:]):.3f} | {np.median(seconds):.2f} | "
                f"{directory_bytes(os.path.join(workdir, 'checkpoints')) / 1e6:.1f} MB |")
  names = list(curves)
  print(f"{train['pairs']} training pairs, {len(curves[names[0]])} steps of "
        f"{scale.pairs_per_step} pairs (both orders), cutoff {scale.cutoff}\n")
  print("| variant | lr | first loss | last loss | mean of last 5 | median s/step | "
        "checkpoints |")
  print("|---|---|---|---|---|---|---|")
  print("\n".join(rows))
  print("\n| step | " + " | ".join(names) + " |")
  print("|---|" + "---|" * len(names))
  for step in range(len(curves[names[0]])):
    print(f"| {step + 1} | " + " | ".join(f"{curves[n][step]:.3f}" for n in names) + " |")
  with open(os.path.join(args.workdir, "curves.json"), "w", encoding="utf-8") as f:
    json.dump(curves, f, indent=2)


if __name__ == "__main__":
  main()
