"""GRAM's table at small scale: SmolLM2-135M-Instruct, real preference data, and the
Bradley–Terry reward model users train today (TRL's RewardTrainer) as the peer.

  python bench/replicate_gram.py                  # the full recipe: needs a GPU (hours on CPU)
  python bench/replicate_gram.py --scale=cpu      # fewer pairs, shorter prompts: ~90 min, 2 cores
  python bench/replicate_gram.py --scale=smoke    # the same recipe on a small subset (CPU)
  python bench/replicate_gram.py --seeds=0,1,2 --workdir=/tmp/replicate
  python bench/replicate_gram.py --scale=smoke --rows=gram_r2   # one row, same data and seed

Recipe, per seed (a rerun reuses every finished step under --workdir):
  zero-shot        SmolLM2 judging with the official GRAM prompt, no training;
  BT (TRL)         AutoModelForSequenceClassification + trl.RewardTrainer on the same pairs,
                   same epochs, learning rate and pairs per step;
  GRAM ft ε=0.1    stage `finetune` (verdict loss, both A/B orders, label smoothing 0.1);
  GRAM ft ε=0      the label-smoothing ablation;
  GRAM s1 + ft     stage `pretrain` on the same pairs without their labels, then `finetune`;
  GRAM-R²          stage `self_train`: π_ψ learns to prove labels from 12 hand-written seed
                   proofs of HH-RLHF pairs (bench/data/hh_rlhf_seed_proofs.jsonl, joined with
                   ../shared/data by line), π_φ warm-starts on the labeled pairs' proofs,
                   then rounds of pseudo-labels on unlabeled pairs; judged by its rationale
                   and <answer> verdict (voting over samples of both orders).

Data (../shared/data): train = HH-RLHF harmless-base test + RMB pairwise outside the held-out
categories; evaluation = LLMBar (5 subsets, RewardBench chat-hard), HHH, RM-Bench chat,
PandaLM, and RMB pairwise and best-of-n in the held-out categories. A training pair whose
question appears in any evaluation set is dropped and counted. Every evaluation uses the
official grouping rules (gram_jax.data.benchmarks); the output is one Markdown table, also
written with every figure to <workdir>/summary.json. Every accuracy carries a 95 % percentile
bootstrap interval over the evaluated records (the mean of 6 sets resamples each set).
"""
import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gram_jax import provenance  # noqa: E402
from gram_jax.data import benchmarks  # noqa: E402
from gram_jax.hf.smollm2 import smollm2_instruct  # noqa: E402
from gram_jax.stages import evaluate  # noqa: E402
from replicate_data import (  # noqa: E402
    SHARED, native_eval_sets, questions, sample, seed_proofs, train_set, write_json)

FILE_NAMES = {"rmbench": "rmbench_chat"}
# --rows names: each selects the rows of one part of the recipe.
PARTS = ("zero_shot", "bt", "ft", "stage1", "gram_r2")
ROWS = ("zero-shot", "BT (TRL RewardTrainer)", "GRAM ft ε=0.1", "GRAM ft ε=0",
        "GRAM s1 + ft ε=0.1", "GRAM-R² (self-training)")
COLUMNS = (("llmbar", "LLMBar (chat-hard)"), ("hhh", "HHH"), ("rmbench", "RM-Bench chat"),
           ("rmbench_hard", "RM-Bench hard"), ("pandalm", "PandaLM"),
           ("rmb", "RMB pairwise (held-out)"), ("rmb_bon", "RMB BoN (held-out)"))


@dataclasses.dataclass(frozen=True)
class Scale:
  train_pairs: int  # 0: every training pair
  eval_items: int  # per benchmark; 0: all
  cutoff: int  # tokens of a training example and of a judging prompt
  epochs: float
  pairs_per_step: int
  learning_rate: float
  pretrain_learning_rate: float
  eval_batch: int
  unlabeled_pairs: int  # per self-training round
  rounds: int
  rationale_tokens: int  # new tokens of a proof or a judgment
  votes: int  # judgments per order when judging (voting@k)
  self_train_steps: int  # steps of each π_ψ / π_φ training
  r2_cutoff: int  # GRAM-R²'s prompt + pair + rationale


SCALES = {
    # GRAM's stage-2 settings (lr 2e-5, warmup 0.1, cosine) at a 135M model's batch.
    "full": Scale(train_pairs=0, eval_items=0, cutoff=1024, epochs=1.0, pairs_per_step=16,
                  learning_rate=2e-5, pretrain_learning_rate=1e-5, eval_batch=32,
                  unlabeled_pairs=2000, rounds=2, rationale_tokens=512, votes=3,
                  self_train_steps=400, r2_cutoff=2048),
    # What 2 CPU cores finish in about 90 minutes, the same for every row: full fine-tuning
    # of SmolLM2 (no frozen layers, no LoRA) on 160 pairs at a 512-token cutoff, 20 items a
    # set (RM-Bench: 9 pairs an item); no GRAM-R² row (its rationale generation alone would
    # take hours here).
    "cpu": Scale(train_pairs=160, eval_items=20, cutoff=512, epochs=1.0, pairs_per_step=8,
                 learning_rate=2e-5, pretrain_learning_rate=1e-5, eval_batch=16,
                 unlabeled_pairs=4, rounds=1, rationale_tokens=256, votes=1,
                 self_train_steps=20, r2_cutoff=1024),
    "smoke": Scale(train_pairs=16, eval_items=4, cutoff=320, epochs=1.0, pairs_per_step=4,
                   learning_rate=2e-5, pretrain_learning_rate=1e-5, eval_batch=8,
                   unlabeled_pairs=4, rounds=1, rationale_tokens=64, votes=1,
                   self_train_steps=2, r2_cutoff=768),
}


DONE, STARTED = ".replicate_done", ".replicate_started"


def _read(path: str) -> str | None:
  return open(path, encoding="utf-8").read() if os.path.exists(path) else None


def fingerprint(arguments: list[str]) -> str:
  """The arguments with the content of every file they name, the fingerprint of every
  finished step whose output they name, and the code (commit) that runs the step: a changed
  input or code makes every later step stale."""
  inputs = {}
  for argument in arguments:
    for path in str(argument).split("=", 1)[-1].split(","):
      if os.path.isfile(path):
        with open(path, "rb") as f:
          inputs[path] = hashlib.sha256(f.read()).hexdigest()
      for folder in (path, os.path.dirname(path)):
        if os.path.isdir(folder) and os.path.exists(os.path.join(folder, DONE)):
          inputs[path] = _read(os.path.join(folder, DONE))
  return json.dumps({"arguments": [str(a) for a in arguments], "inputs": inputs,
                     "code": provenance.code_version()}, sort_keys=True)


def main_stage(config: str, workdir: str, *overrides: str) -> str:
  """One gram_jax stage through its CLI. A workdir finished with the same command and inputs
  is reused, one started with them resumes (gram_jax resumes exactly), any other starts
  afresh."""
  command = [sys.executable, "-m", "gram_jax.main", f"--config={ROOT}/configs/{config}.py",
             f"--config.workdir={workdir}", *overrides]
  key = fingerprint([config, *overrides])  # not the workdir: it holds the previous marker
  if _read(os.path.join(workdir, DONE)) == key:
    return workdir
  if _read(os.path.join(workdir, STARTED)) != key:
    shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, STARTED), "w", encoding="utf-8") as f:
    f.write(key)
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  with open(os.path.join(workdir, DONE), "w", encoding="utf-8") as f:
    f.write(key)
  return workdir


def train_overrides(scale: Scale, seed: int, train: dict, lr: float,
                    examples_per_pair: int) -> list[str]:
  """The same pairs per step and steps for every trained row (fine-tuning sees each pair in
  both A/B orders, pre-training once)."""
  steps = max(1, int(scale.epochs * train["pairs"] / scale.pairs_per_step))
  return [f"--config.data.train_files={train['path']}", f"--config.seed={seed}",
          f"--config.data.cutoff_len={scale.cutoff}", f"--config.data.seq_len={scale.cutoff}",
          f"--config.train.global_batch_size={examples_per_pair * scale.pairs_per_step}",
          f"--config.train.num_steps={steps}", f"--config.train.learning_rate={lr}",
          "--config.eval.files=", "--config.checkpoint.every_steps=100000"]


def gram_pairs_per_second(workdir: str, pairs_per_step: int) -> float:
  """Trained pairs per second over every step but the first (compilation)."""
  with open(os.path.join(workdir, "train_metrics.jsonl"), encoding="utf-8") as f:
    seconds = [json.loads(l)["step_seconds"] for l in f][1:]
  return pairs_per_step * len(seconds) / sum(seconds) if seconds else float("nan")


def evaluated(workdir: str, files: dict[str, str]) -> tuple[dict, dict]:
  """Each set's summary and per-record results, as the evaluate stage wrote them."""
  folders = evaluate.output_names(list(files.values()))
  read = lambda folder, name: open(os.path.join(workdir, folder, name), encoding="utf-8")
  return ({name: json.load(read(folder, "summary.json")) for name, folder in
           zip(files, folders)},
          {name: [json.loads(line) for line in read(folder, "results.jsonl")]
           for name, folder in zip(files, folders)})


def evaluate_gram(model: str, workdir: str, files: dict[str, str], scale: Scale,
                  *overrides: str) -> dict:
  main_stage("evaluate", workdir, f"--config.model.path={model}",
             f"--config.eval.files={','.join(files.values())}",
             f"--config.eval.max_len={scale.cutoff}",
             f"--config.eval.batch_size={scale.eval_batch}", *overrides)  # the last one wins
  return figures(*evaluated(workdir, files))


# Each accuracy column recomputed from per-record results as the official summary computes
# it (LLMBar / HHH / PandaLM pool their pairs; RM-Bench averages its items' 3x3 matrices; RMB
# averages subsets, then goals), so it can be recomputed on resampled records.
CELL_OF_RECORDS = {
    "llmbar": ("llmbar", lambda rows: float(np.mean([r["correct"] for r in rows]))),
    "hhh": ("hhh", lambda rows: float(np.mean([r["correct"] for r in rows]))),
    "rmbench": ("rmbench", lambda rows: float(np.mean([r["avg"] for r in rows]))),
    "rmbench_hard": ("rmbench", lambda rows: float(np.mean([r["hard"] for r in rows]))),
    "pandalm": ("pandalm", lambda rows: float(np.mean([r["correct"] for r in rows]))),
    "rmb": ("rmb", lambda rows: benchmarks.rmb_summary(
        "rmb", ((r["category_path"], r["correct"]) for r in rows))["overall"]),
    "rmb_bon": ("rmb_bon", lambda rows: benchmarks.rmb_summary(
        "rmb_bon", ((r["category_path"], r["correct"]) for r in rows))["overall"]),
}
MEAN_OF = ("llmbar", "hhh", "rmbench", "pandalm", "rmb", "rmb_bon")


def intervals(results: dict[str, list[dict]], resamples: int = 2000,
              seed: int = 0) -> dict[str, list[float]]:
  """95 % percentile bootstrap interval of every accuracy column and of the mean of 6 sets:
  each set's records resampled with replacement, the cell recomputed from them."""
  rng = np.random.default_rng(seed)
  draws: dict[str, list[float]] = {name: [] for name in (*CELL_OF_RECORDS, "mean")}
  for _ in range(resamples):
    resampled = {name: [rows[i] for i in rng.integers(0, len(rows), len(rows))]
                 for name, rows in results.items()}
    cells = {name: cell_of(resampled[source]) for name, (source, cell_of)
             in CELL_OF_RECORDS.items()}
    for name, value in cells.items():
      draws[name].append(value)
    draws["mean"].append(float(np.mean([cells[k] for k in MEAN_OF])))
  return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
          for name, v in draws.items()}


def figures(summaries: dict[str, dict], results: dict[str, list[dict]]) -> dict[str, float]:
  """The table's cells from the official summaries, and their intervals from the records
  (each recomputed cell checked against the summary's)."""
  s = summaries
  cells = {"llmbar": s["llmbar"]["groups"]["chat-hard"], "hhh": s["hhh"]["overall"],
           "rmbench": s["rmbench"]["overall"]["avg"],
           "rmbench_hard": s["rmbench"]["overall"]["hard"], "pandalm": s["pandalm"]["accuracy"],
           "rmb": s["rmb"]["overall"], "rmb_bon": s["rmb_bon"]["overall"]}
  cells["mean"] = float(np.mean([cells[k] for k in MEAN_OF]))
  for name, (source, cell_of) in CELL_OF_RECORDS.items():
    recomputed = cell_of(results[source])
    if not abs(recomputed - cells[name]) < 1e-9:
      raise AssertionError(f"{name}: {recomputed} from the records, {cells[name]} reported")
  cells["consistency"] = float(np.mean([v["position_consistency"] for v in s.values()]))
  cells["trimmed"] = sum(v["trimmed_pairs"] for v in s.values())
  cells["ci"] = intervals(results)
  cells["records"] = {name: len(rows) for name, rows in results.items()}
  return cells


def run_seed(args: argparse.Namespace, scale: Scale, seed: int) -> dict[str, dict]:
  out = os.path.join(args.workdir, f"seed{seed}")
  native = native_eval_sets()
  # RM-Bench's chat file names no domain in its rows: the file name does.
  files = {name: write_json(os.path.join(out, "eval_data",
                                         f"{FILE_NAMES.get(name, name)}.json"),
                            sample(rows, scale.eval_items, seed))
           for name, rows in native.items()}
  asked = set().union(*map(questions, native.values()))
  train = train_set(os.path.join(out, "train_data"), scale, seed, asked)
  print(f"seed {seed}: {train['pairs']} training pairs ({train['dropped_eval_overlap']} "
        f"dropped: their question is in an evaluation set; {train['skipped_bad']} bad)",
        flush=True)
  base = smollm2_instruct()
  rows: dict[str, dict] = {}
  start = time.time()
  if "zero_shot" in args.rows:
    rows["zero-shot"] = evaluate_gram(base, os.path.join(out, "eval_zero_shot"), files, scale)
  if "bt" in args.rows:
    import bt_peer  # torch and trl load only here
    peer_key = fingerprint([base, train["path"], *files.values(), scale.cutoff, scale.epochs,
                            scale.pairs_per_step, scale.learning_rate, scale.eval_batch, seed])
    bt = bt_peer.train_and_evaluate(base, train, files, scale, seed, os.path.join(out, "bt"),
                                    peer_key)
    rows["BT (TRL RewardTrainer)"] = {
        **figures(*evaluated(os.path.join(out, "bt"), files)),
        "pairs_per_second": bt["pairs_per_second"],
        "pairs_filtered_too_long": bt["pairs_filtered_too_long"]}
  for name, smoothing in (("GRAM ft ε=0.1", 0.1), ("GRAM ft ε=0", 0.0)) if "ft" in args.rows else ():
    workdir = main_stage("finetune", os.path.join(out, f"ft_eps{smoothing}"),
                         f"--config.model.path={base}",
                         f"--config.train.label_smoothing={smoothing}",
                         *train_overrides(scale, seed, train, scale.learning_rate, 2))
    rows[name] = {**evaluate_gram(workdir, workdir + "_eval", files, scale),
                  "pairs_per_second": gram_pairs_per_second(workdir, scale.pairs_per_step)}
  if "stage1" in args.rows:
    stage1 = main_stage("pretrain", os.path.join(out, "stage1"), f"--config.model.path={base}",
                        "--config.data.pack=false",
                        *train_overrides(scale, seed, train, scale.pretrain_learning_rate, 1))
    workdir = main_stage("finetune", os.path.join(out, "stage1_ft"),
                         f"--config.model.path={stage1}",
                         *train_overrides(scale, seed, train, scale.learning_rate, 2))
    rows["GRAM s1 + ft ε=0.1"] = {
        **evaluate_gram(workdir, workdir + "_eval", files, scale),
        "pairs_per_second": gram_pairs_per_second(workdir, scale.pairs_per_step)}
  if "gram_r2" in args.rows:
    rows["GRAM-R² (self-training)"] = gram_r2_row(out, base, train, files, scale, seed, asked)
  print(f"seed {seed}: {(time.time() - start) / 60:.1f} min", flush=True)
  return {"train": train, "rows": rows}


def gram_r2_row(out: str, base: str, train: dict, files: dict[str, str], scale: Scale,
                seed: int, asked: set[str]) -> dict:
  """Stage self_train from the hand-written seed proofs, then its judge on every set. Its
  cutoff is its own: the GRAM-RR prompt alone is 451 SmolLM2 tokens."""
  workdir = main_stage(
      "self_train", os.path.join(out, "gram_r2"), f"--config.model.path={base}",
      "--config.template.judge=gram_rr", "--config.data.builtin_tasks=",
      f"--config.seed={seed}", f"--config.data.cutoff_len={scale.r2_cutoff}",
      f"--config.data.seq_len={scale.r2_cutoff}",
      f"--config.train.global_batch_size={2 * scale.pairs_per_step}",
      # Rows 2.4x GRAM's cutoff: without remat and accumulation its 135M-model steps need
      # 28 GB of host memory on CPU (measured), over a 24 GB machine.
      "--config.model.remat=full", f"--config.train.micro_batches={scale.pairs_per_step}",
      f"--config.self_train.seed_files={seed_proofs(os.path.join(out, 'train_data'), asked)}",
      f"--config.self_train.labeled_files={train['path']}",
      f"--config.self_train.unlabeled_files={','.join(train['unlabeled'])}",
      f"--config.self_train.rounds={scale.rounds}", "--config.self_train.baseline=false",
      f"--config.self_train.max_new_tokens={scale.rationale_tokens}",
      f"--config.self_train.judge_samples={scale.votes}",
      f"--config.self_train.batch_size={scale.eval_batch}",
      *(f"--config.self_train.{field}={scale.self_train_steps}" for field in (
          "prover_steps", "policy_steps", "round_steps")),
      # No task adaptation: the recipe has no target-task set apart from the labeled pairs,
      # and adapting to the labeled set would only retrain on warm-start data.
      "--config.self_train.final_finetune_steps=0",
      "--config.self_train.policy_epochs=1", "--config.self_train.policy_init=base",
      f"--config.self_train.learning_rate={scale.learning_rate}",
      f"--config.self_train.round_learning_rate={scale.learning_rate}")
  return evaluate_gram(
      os.path.join(workdir, "hf"), workdir + "_eval", files, scale,
      f"--config.eval.max_len={scale.r2_cutoff}",
      f"--config.reasoning.votes={2 * scale.votes}",  # in total: scale.votes per order
      *(["--config.reasoning.temperature=0.75"] if scale.votes > 1 else []),
      f"--config.reasoning.max_new_tokens={scale.rationale_tokens}")


def cell(values: list[float], percent: bool = True,
         interval: list[float] | None = None) -> str:
  """Mean ± sample standard deviation over seeds; one seed's value with its 95 % interval
  [low, high]. Percentages to 0.1, rates to 3 digits."""
  values = [v for v in values if v == v]
  if not values:
    return "—"
  scale = 100 if percent else 1
  shown = (lambda x: f"{x:.1f}") if percent else (lambda x: f"{x:.3g}")
  mean = shown(scale * float(np.mean(values)))
  if len(values) == 1 and interval:
    return f"{mean} [{shown(scale * interval[0])}, {shown(scale * interval[1])}]"
  if len(values) == 1:
    return mean
  return f"{mean} ± {shown(scale * float(np.std(values, ddof=1)))}"


def table(results: dict[int, dict]) -> str:
  header = ([label for _, label in COLUMNS] + ["mean of 6 sets", "position consistency",
                                               "train pairs/s"])
  lines = ["| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
  for row in [r for r in ROWS if r in next(iter(results.values()))["rows"]]:
    per_seed = [r["rows"][row] for r in results.values()]
    ci = lambda k: per_seed[0]["ci"][k] if len(per_seed) == 1 else None
    cells = [cell([s[k] for s in per_seed], interval=ci(k)) for k, _ in COLUMNS]
    cells.append(cell([s["mean"] for s in per_seed], interval=ci("mean")))
    consistency = [s["consistency"] for s in per_seed]
    cells.append("— (scalar)" if row.startswith("BT") else cell(consistency))
    cells.append(cell([s.get("pairs_per_second", float("nan")) for s in per_seed], False))
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  lines.append("")
  for seed, r in results.items():
    train, peer = r["train"], r["rows"].get("BT (TRL RewardTrainer)")
    trimmed = {row: figures["trimmed"] for row, figures in r["rows"].items()}
    filtered = ("" if peer is None else
                f" TRL filtered {peer['pairs_filtered_too_long']} pairs longer than the cutoff "
                f"(RewardConfig.max_length) and trained on the rest;")
    lines.append(
        f"Seed {seed}: {train['pairs']} training pairs ({train['dropped_eval_overlap']} dropped "
        f"for asking an evaluation question, {train['dropped_duplicates']} repeated, "
        f"{train['skipped_bad']} unreadable);{filtered} judged pairs trimmed to the cutoff "
        f"per row: {trimmed}.")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=sorted(SCALES), default="full")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds")
  parser.add_argument("--gram_r2", action="store_true",
                      help="add the GRAM-R² row (stage self_train; hours on a GPU at full "
                      "scale; smoke-scale run in BENCHMARKS.md)")
  parser.add_argument("--rows", default=",".join(PARTS[:-1]),
                      help=f"comma-separated parts of the recipe to run, of {', '.join(PARTS)}"
                      " (a part's rows use the same data and seed as in a full run)")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "workdir", "replicate_gram"))
  args = parser.parse_args()
  if not os.path.isdir(SHARED):
    sys.exit(f"{SHARED}: the shared data folder is missing")
  scale = SCALES[args.scale]
  args.rows = set(filter(None, args.rows.split(","))) | ({"gram_r2"} if args.gram_r2 else set())
  if unknown := args.rows - set(PARTS):
    parser.error(f"--rows: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
  results = {int(s): run_seed(args, scale, int(s)) for s in args.seeds.split(",")}
  text = table(results)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"scale": args.scale, "settings": dataclasses.asdict(scale),
               "seeds": {str(k): v for k, v in results.items()}, "table": text}, f, indent=2)
  print(text)


if __name__ == "__main__":
  main()
