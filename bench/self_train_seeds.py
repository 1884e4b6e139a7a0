"""The main job's table over several seeds: mean ± sample standard deviation per stage.

  python bench/self_train_seeds.py                       # seeds 0,1,2 of the default run
  python bench/self_train_seeds.py --seeds=0,1,2,3 --workdir=/tmp/st -- \
      --config.self_train.policy_init=previous            # anything after -- goes to main

Each seed is one `python -m gram_jax.main --config=configs/self_train.py --config.seed=S`
run in its own workdir (a rerun resumes it); the seed draws the built-in data splits, the
initial weights and the sampling. Prints the Markdown table README.md shows and writes it,
with every seed's rows, to <workdir>/summary.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = (("heldout_accuracy", "held-out verdict acc."),
           ("heldout_probability_accuracy", "held-out P(A)/P(B) acc."),
           ("heldout_consistency", "position consistency"),
           ("kept", "kept pairs"), ("kept_agree_gold", "kept agree w/ gold"))


def run_seed(seed: int, workdir: str, extra: list[str]) -> tuple[list[dict], float]:
  start = time.time()
  command = [sys.executable, "-m", "gram_jax.main",
             f"--config={os.path.join(ROOT, 'configs', 'self_train.py')}",
             f"--config.seed={seed}", f"--config.workdir={workdir}", *extra]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"seed {seed} failed:\n{result.stderr[-3000:]}")
  with open(os.path.join(workdir, "rounds.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f], time.time() - start


def cell(values: list, percent: bool) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  scale = 100 if percent else 1
  mean = scale * float(np.mean(values))
  spread = scale * float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return f"{mean:.1f} ± {spread:.1f}" if percent else f"{mean:.0f} ± {spread:.0f}"


def table(runs: list[list[dict]]) -> str:
  lines = ["| stage | " + " | ".join(name for _, name in COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 1) + "|"]
  for index, row in enumerate(runs[0]):
    cells = [cell([run[index].get(key) for run in runs], key != "kept") for key, _ in COLUMNS]
    lines.append(f"| {row['stage']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--workdir", default=os.path.join("workdir", "self_train_seeds"))
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  seeds = [int(s) for s in args.seeds.split(",")]
  runs, seconds = [], []
  for seed in seeds:
    rows, took = run_seed(seed, os.path.join(args.workdir, f"seed_{seed}"), extra)
    runs.append(rows)
    seconds.append(took)
    print(f"seed {seed}: {took / 60:.1f} min", file=sys.stderr)
  text = table(runs)
  print(f"{len(seeds)} seeds ({args.seeds}), mean ± sample standard deviation; "
        f"{np.mean(seconds) / 60:.1f} min per seed\n\n{text}")
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"seeds": seeds, "overrides": extra, "minutes": [s / 60 for s in seconds],
               "runs": runs, "table": text}, f, indent=2)


if __name__ == "__main__":
  main()
