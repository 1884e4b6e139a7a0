"""Does training with gram_jax give a better judge? GRAM's recipe on a real model
(SmolLM2-135M-Instruct) and real pairs, against the untrained model and the Bradley–Terry
reward model users train today (TRL's RewardTrainer), in distribution and out of it.

  python bench/replicate_gram.py --scale=cpu        # 2 CPU cores: hours; resumable
  python bench/replicate_gram.py --scale=full --seeds=0,1,2   # a GPU
  (a lent GPU machine: bench/replicate_device.py sends what it needs and runs this with
  --time_budget_s, inside the lease)
  python bench/replicate_gram.py --scale=smoke      # the recipe end to end on a few pairs
  python bench/replicate_gram.py --scale=cpu --rows=zero_shot,ft --sets=in_distribution
  (parts: zero_shot, ft = GRAM ε=0.1, bt, balance = per-epoch balance, smoothing = ε=0,
  length = GRAM ε=0.1 and BT on length-balanced pairs, stage1, gram_r2)

Data (../shared/data). In distribution: HH-RLHF harmless-base test + RMB pairwise outside
its held-out categories, repeats removed, no question of an evaluation set, and only pairs
whose GRAM judging prompt fits the cutoff in both orders uncut — so every row trains on the
same pairs and no trainer cuts or drops one (TRL's `max_length` drops longer pairs). Whole
prompts are held out (a fixed split, the same for every seed) until `heldout_pairs` pairs;
training pairs are drawn from the rest. Out of distribution: LLMBar (RewardBench chat-hard),
HHH, RM-Bench chat, PandaLM, RMB pairwise and best-of-n in the held-out categories, each
scored by its published rules on `ood_records` records.

Rows, every trained one on the same pairs (the length ablation's excepted), steps, schedule,
cutoff and LoRA (rank, alpha, all seven projections; PEFT on the TRL side):
  zero-shot              SmolLM2 judging with the official GRAM prompt, no training;
  BT (TRL)               AutoModelForSequenceClassification + trl.RewardTrainer (+ PEFT);
  GRAM ε=0.1 / ε=0       stage finetune with balanced steps (both A/B orders of a pair in
                         the same step), label smoothing 0.1 and its ablation;
  GRAM ε=0.1 per-epoch   the same with orders balanced over the epoch only (the old default);
  GRAM ε=0.1 / BT, length-balanced pairs
                         the same, trained on as many other pairs from the same pool, half
                         of them with the shorter response preferred: the ablation that
                         shows what each learns when "the longer wins" scores 50 %;
  GRAM s1 + ft ε=0.1     stage pretrain on the same pairs without labels, then finetune;
  GRAM-R²                stage self_train from 12 hand-written seed proofs (GPU scale only).
Every trained row logs held-out accuracy on `curve_pairs` random held-out pairs every
`curve_every` steps (GRAM rows also position consistency and the mean P(first slot));
<workdir>/curves.png draws them.

Each step (a training, an evaluation) is cached under --workdir by its inputs and settings
and resumes where it stopped (gram_jax resumes exactly from its checkpoints); the code
version that ran each step is recorded beside it and in summary.json. In-distribution
evaluations of every row run before the out-of-distribution ones.
"""
import argparse
import dataclasses
import functools
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gram_jax import judge_card, provenance  # noqa: E402
from gram_jax.hf.smollm2 import smollm2_instruct  # noqa: E402
from gram_jax.stages import evaluate  # noqa: E402
from replicate_data import SHARED, recipe_data  # noqa: E402
from replicate_report import (  # noqa: E402
    IN_DIST, accuracy_by_length, by_source, curve_tables, curves_png, figures, length_preference,
    table)
from replicate_steps import (  # noqa: E402
    NotCached, StepFailed, gram_curve, gram_pairs_per_second, main_stage, may_run, note_code,
    noted_code, step_code)
import replicate_steps  # noqa: E402

# --rows names: each selects the rows of one part of the recipe.
PARTS = ("zero_shot", "ft", "bt", "balance", "smoothing", "length", "stage1", "gram_r2")
ZERO_SHOT, BT = "zero-shot", "BT (TRL RewardTrainer)"
# The length ablation's rows train on other pairs (data["train_length_balanced"]).
GRAM_LENGTH, BT_LENGTH = "GRAM ε=0.1, length-balanced pairs", "BT, length-balanced pairs"
GRAM_ROWS = {  # row: (part, label smoothing, balanced steps)
    "GRAM ε=0.1": ("ft", 0.1, True),
    "GRAM ε=0": ("smoothing", 0.0, True),
    "GRAM ε=0.1, per-epoch balance": ("balance", 0.1, False),
    GRAM_LENGTH: ("length", 0.1, True)}
STAGE1, GRAM_R2 = "GRAM s1 + ft ε=0.1", "GRAM-R² (self-training)"
ROWS = (ZERO_SHOT, BT, *GRAM_ROWS, BT_LENGTH, STAGE1, GRAM_R2)  # the table's order
# The order they run in: the comparison that matters most first (a CPU run spans sessions).
RUN_ORDER = (ZERO_SHOT, "GRAM ε=0.1", BT, "GRAM ε=0.1, per-epoch balance", "GRAM ε=0",
             GRAM_LENGTH, BT_LENGTH, STAGE1, GRAM_R2)


@dataclasses.dataclass(frozen=True)
class Scale:
  train_pairs: int  # 0: every in-distribution pair not held out
  heldout_pairs: int  # in-distribution held-out pairs (whole prompts)
  curve_pairs: int  # this many held-out pairs, drawn at random, make the learning curves
  curve_every: int  # steps between learning-curve points
  ood_records: int  # per out-of-distribution set; 0: all
  cutoff: int  # tokens of a judging prompt (training and evaluation); pairs must fit
  epochs: float
  pairs_per_step: int
  micro_batches: int  # gradient accumulation of a step's 2 x pairs_per_step prompts
  learning_rate: float
  pretrain_learning_rate: float
  lora_rank: int  # 0: full fine-tuning on both sides
  lora_alpha: float
  eval_batch: int
  unlabeled_pairs: int  # per self-training round
  rounds: int
  rationale_tokens: int  # new tokens of a proof or a judgment
  votes: int  # judgments per order when judging (voting@k)
  self_train_steps: int  # steps of each π_ψ / π_φ training
  r2_cutoff: int  # GRAM-R²'s prompt + pair + rationale


SCALES = {
    # A GPU: every fitting training pair, 1,024-token prompts, every record of every set.
    "full": Scale(train_pairs=0, heldout_pairs=500, curve_pairs=500, curve_every=50,
                  ood_records=0, cutoff=1024, epochs=1.0, pairs_per_step=16, micro_batches=1,
                  learning_rate=1e-4, pretrain_learning_rate=2e-5, lora_rank=16,
                  lora_alpha=32.0, eval_batch=32, unlabeled_pairs=2000, rounds=2,
                  rationale_tokens=512, votes=3, self_train_steps=400, r2_cutoff=2048),
    # 2 CPU cores, 24 GB (measured: LoRA trains ~155 tokens/s, scoring ~0.55 pairs/s; 16
    # rows of 512 in 2 micro-batches peaked at 18.7 GB, so 4): 1,000 training pairs, 125 steps
    # a row, 500 held-out pairs, 100 records a set.
    "cpu": Scale(train_pairs=1000, heldout_pairs=500, curve_pairs=128, curve_every=25,
                 ood_records=100, cutoff=512, epochs=1.0, pairs_per_step=8, micro_batches=4,
                 learning_rate=1e-4, pretrain_learning_rate=2e-5, lora_rank=16,
                 lora_alpha=32.0, eval_batch=16, unlabeled_pairs=4, rounds=1,
                 rationale_tokens=256, votes=1, self_train_steps=20, r2_cutoff=1024),
    "smoke": Scale(train_pairs=16, heldout_pairs=16, curve_pairs=8, curve_every=2,
                   ood_records=4, cutoff=512, epochs=1.0, pairs_per_step=4, micro_batches=1,
                   learning_rate=1e-4, pretrain_learning_rate=2e-5, lora_rank=16,
                   lora_alpha=32.0, eval_batch=8, unlabeled_pairs=4, rounds=1,
                   rationale_tokens=64, votes=1, self_train_steps=2, r2_cutoff=768),
}
# ---------------------------------------------------------------------------- rows


def steps_of(scale: Scale, train_pairs: int) -> int:
  return max(1, int(scale.epochs * train_pairs / scale.pairs_per_step))


def lora_overrides(scale: Scale) -> list[str]:
  if not scale.lora_rank:
    return []
  return [f"--config.model.lora.rank={scale.lora_rank}",
          f"--config.model.lora.alpha={scale.lora_alpha}"]


def gram_training(scale: Scale, seed: int, data: dict, lr: float, prompts_per_pair: int,
                  curves: bool) -> list[str]:
  """The same pairs, steps, schedule, cutoff and LoRA for every GRAM row: a step is
  `pairs_per_step` pairs (both orders for fine-tuning, one prompt a row)."""
  rows = prompts_per_pair * scale.pairs_per_step
  evaluation = ([f"--config.eval.files={data['curve']}",
                 f"--config.eval.every_steps={scale.curve_every}",
                 f"--config.eval.batch_size={scale.eval_batch}"] if curves
                else ["--config.eval.files="])
  return [f"--config.data.train_files={data['train']}", f"--config.seed={seed}",
          f"--config.data.cutoff_len={scale.cutoff}", f"--config.data.seq_len={scale.cutoff}",
          "--config.data.pack=false", f"--config.train.global_batch_size={rows}",
          f"--config.train.micro_batches={scale.micro_batches}",
          f"--config.train.num_steps={steps_of(scale, data['pairs'])}",
          f"--config.train.learning_rate={lr}", "--config.train.warmup_ratio=0.1",
          f"--config.checkpoint.every_steps={scale.curve_every}",
          *lora_overrides(scale), *evaluation]


def evaluate_model(model: str, workdir: str, files: dict[str, str], scale: Scale,
                   *overrides: str) -> tuple[dict, dict]:
  """gram_jax's evaluate stage on `files`: each set's summary and per-record results."""
  main_stage("evaluate", workdir, f"--config.model.path={model}",
             f"--config.eval.files={','.join(files.values())}",
             f"--config.eval.max_len={scale.cutoff}",
             f"--config.eval.batch_size={scale.eval_batch}", *overrides)  # the last one wins
  return evaluated(workdir, files)


def evaluated(workdir: str, files: dict[str, str]) -> tuple[dict, dict]:
  """Each set's summary and per-record results, as the evaluate stage wrote them."""
  folders = evaluate.output_names(list(files.values()))
  read = lambda folder, name: open(os.path.join(workdir, folder, name), encoding="utf-8")
  return ({name: json.load(read(folder, "summary.json")) for name, folder in
           zip(files, folders)},
          {name: [json.loads(line) for line in read(folder, "results.jsonl")]
           for name, folder in zip(files, folders)})


def evaluation_prompt(summaries: dict[str, dict]) -> str:
  """The prompt every evaluation of a row judged with, from what each summary records."""
  names = {summary["judge"].split(",", 1)[0].removeprefix("prompt ")
           for summary in summaries.values()}
  if len(names) != 1:
    raise AssertionError(f"one row judged with several prompts: {sorted(names)}")
  return names.pop()


def check_card_prompt(model_dir: str, summaries: dict[str, dict]) -> str:
  """The prompt a trained row was trained with (its judge card) is the one its evaluations
  used; returns its name."""
  card = judge_card.read_judge_card(model_dir)
  if not card.get("template"):
    raise AssertionError(f"{model_dir}: no judge card")
  trained = judge_card.prompt_name(card["template"])
  judged = evaluation_prompt(summaries)
  if trained != judged:
    raise AssertionError(f"{model_dir}: trained with prompt {trained}, evaluated with {judged}")
  return trained


def run_row(name: str, out: str, base: str, data: dict, scale: Scale, seed: int,
            sets: set[str]) -> dict:
  """One row: its training (cached), then its evaluations on `sets` (cached)."""
  files = {k: v for k, v in data["files"].items()
           if (k == IN_DIST and IN_DIST in sets) or (k != IN_DIST and "ood" in sets)}
  row: dict = {"evaluated": {}}
  if name in (GRAM_LENGTH, BT_LENGTH):
    data = {**data, "train": data["train_length_balanced"],
            "pairs": data["counts"]["train_length_balanced"]}
  if name == ZERO_SHOT:
    model = base
  elif name in (BT, BT_LENGTH):
    import bt_peer  # torch, trl and peft load only here
    peer_dir = os.path.join(out, "bt" if name == BT else slug(name))
    arguments = (base, data["train"], data["curve"], scale, seed, peer_dir)
    trained = bt_peer.trained_result(*arguments)
    if trained is None:
      may_run(peer_dir)
      trained = peer_step(bt_peer.train, *arguments)
    model = trained["model_dir"]
    row.update(pairs_per_second=trained["pairs_per_second"], curve=trained["curve"],
               steps=trained["steps"], code=trained["code"])
  elif name == GRAM_R2:
    model = gram_r2_model(out, base, data, scale, seed)
    row["code"] = step_code(os.path.dirname(model))
  else:
    model = gram_model(name, out, base, data, scale, seed)
    row.update(pairs_per_second=gram_pairs_per_second(model, scale.pairs_per_step),
               curve=gram_curve(model), code=step_code(model),
               steps=steps_of(scale, data["pairs"]))
  for kind, chosen in ((IN_DIST, {k: v for k, v in files.items() if k == IN_DIST}),
                       ("ood", {k: v for k, v in files.items() if k != IN_DIST})):
    if not chosen:
      continue
    workdir = os.path.join(out, "eval", slug(name), kind)
    if name in (BT, BT_LENGTH):
      import bt_peer
      folders = evaluate.output_names(list(chosen.values()))
      if not all(os.path.exists(os.path.join(workdir, f, "summary.json")) for f in folders):
        may_run(workdir)
        note_code(workdir)  # the peer evaluates in this process: no stage marker of its own
      summaries, results = peer_step(bt_peer.evaluate_peer, model, chosen, scale, workdir)
      prompt = "— (scalar reward)"
      if code := noted_code(workdir):
        row.setdefault("eval_code", {})[kind] = ", ".join(code)
    else:
      extra = r2_eval_overrides(scale) if name == GRAM_R2 else ()
      summaries, results = evaluate_model(model, workdir, chosen, scale, *extra)
      prompt = (evaluation_prompt(summaries) if name == ZERO_SHOT
                else check_card_prompt(model, summaries))
      row.setdefault("eval_code", {})[kind] = step_code(workdir)
    row["prompt"] = prompt
    row["evaluated"].update({k: {"summary": summaries[k], "results": results[k]}
                             for k in chosen})
  return row


def peer_step(step, *arguments):
  """A step of the peer (it runs in this process): an error fails its row, not the run."""
  try:
    return step(*arguments)
  except Exception as e:  # noqa: BLE001 (TRL, PEFT, torch: any of theirs)
    raise StepFailed(f"{step.__module__}.{step.__name__}: {type(e).__name__}: {e}") from e


def slug(name: str) -> str:
  """A row's folder name: `GRAM ε=0.1` -> gram_eps_0_1."""
  name = name.replace("ε", "eps").replace("²", "2")
  return "_".join("".join(ch if ch.isascii() and ch.isalnum() else " " for ch in name)
                  .lower().split())


def gram_model(name: str, out: str, base: str, data: dict, scale: Scale, seed: int) -> str:
  """A GRAM fine-tuning row's run directory (stage finetune from the SmolLM2 preset, whose
  GRAM prompt, schedule and judge card it keeps; stage pretrain first for stage 1)."""
  start = base
  if name == STAGE1:
    start = main_stage(
        "pretrain:smollm2-135m", os.path.join(out, "stage1"), f"--config.model.path={base}",
        *gram_training(scale, seed, data, scale.pretrain_learning_rate, 1, curves=False))
    smoothing, balanced = 0.1, True
  else:
    _, smoothing, balanced = GRAM_ROWS[name]
  return main_stage("finetune:smollm2-135m", os.path.join(out, slug(name)),
                    f"--config.model.path={start}",
                    f"--config.train.label_smoothing={smoothing}",
                    f"--config.data.balanced_steps={str(balanced).lower()}",
                    *gram_training(scale, seed, data, scale.learning_rate, 2, curves=True))


def gram_r2_model(out: str, base: str, data: dict, scale: Scale, seed: int) -> str:
  """Stage self_train from the hand-written seed proofs; its exported judge. Its cutoff is
  its own: the GRAM-RR prompt alone is 451 SmolLM2 tokens."""
  workdir = main_stage(
      "self_train:smollm2-135m", os.path.join(out, "gram_r2"), f"--config.model.path={base}",
      f"--config.seed={seed}", f"--config.data.cutoff_len={scale.r2_cutoff}",
      f"--config.data.seq_len={scale.r2_cutoff}",
      f"--config.train.global_batch_size={2 * scale.pairs_per_step}",
      # Without remat and accumulation a 135M-model step at 2.4x GRAM's cutoff needs 28 GB
      # of host memory on CPU (measured), over a 24 GB machine.
      "--config.model.remat=full", f"--config.train.micro_batches={scale.pairs_per_step}",
      f"--config.self_train.seed_files={data['seed_proofs']}",
      f"--config.self_train.labeled_files={data['train']}",
      f"--config.self_train.unlabeled_files={','.join(data['unlabeled'])}",
      f"--config.self_train.rounds={scale.rounds}", "--config.self_train.baseline=false",
      f"--config.self_train.max_new_tokens={scale.rationale_tokens}",
      f"--config.self_train.judge_samples={scale.votes}",
      f"--config.self_train.batch_size={scale.eval_batch}",
      *(f"--config.self_train.{field}={scale.self_train_steps}" for field in (
          "prover_steps", "policy_steps", "round_steps")),
      "--config.self_train.final_finetune_steps=0",
      "--config.self_train.policy_epochs=1", "--config.self_train.policy_init=base",
      f"--config.self_train.learning_rate={scale.learning_rate}",
      f"--config.self_train.round_learning_rate={scale.learning_rate}",
      *lora_overrides(scale))
  return os.path.join(workdir, "hf")


def r2_eval_overrides(scale: Scale) -> list[str]:
  return [f"--config.eval.max_len={scale.r2_cutoff}",
          f"--config.reasoning.votes={2 * scale.votes}",  # in total: scale.votes per order
          *(["--config.reasoning.temperature=0.75"] if scale.votes > 1 else []),
          f"--config.reasoning.max_new_tokens={scale.rationale_tokens}"]


# ---------------------------------------------------------------------------- figures

@functools.cache
def tokenizer_of(model: str):
  import transformers
  return transformers.AutoTokenizer.from_pretrained(model)


def run_seed(args: argparse.Namespace, scale: Scale, seed: int) -> dict:
  out = os.path.join(args.workdir, f"seed{seed}")
  base = smollm2_instruct()
  data = recipe_data(out, scale, seed, tokenizer_of(base))
  data["pairs"] = data["counts"]["train"]
  c = data["counts"]
  print(f"seed {seed}: {c['train']} training pairs, {c['heldout']} held out "
        f"({c['heldout_prompts']} prompts) of {c['fit_cutoff']} that fit {scale.cutoff} "
        f"tokens ({c['in_distribution']} in distribution; {c['dropped_eval_overlap']} dropped "
        f"for asking an evaluation question, {c['dropped_duplicates']} repeated, "
        f"{c['skipped_bad']} unreadable); the training pairs prefer the longer response "
        f"in {100 * c['train_longer_preferred']:.1f} % (of those of unequal length), the "
        f"length ablation's {c['train_length_balanced']} in half", flush=True)
  wanted = [r for r in RUN_ORDER if row_part(r) in args.rows]
  rows: dict[str, dict] = {}
  failures: list[str] = []
  for sets in ({IN_DIST}, {"ood"}):  # every row in distribution first
    if not sets & args.sets:
      continue
    for name in wanted:
      try:
        row = run_row(name, out, base, data, scale, seed, sets)
      except NotCached as e:
        print(f"seed {seed}: {name} {sorted(sets)}: not finished ({e}); left out", flush=True)
        continue
      except StepFailed as e:
        print(f"seed {seed}: {name} {sorted(sets)}: FAILED ({e}); left out", flush=True)
        failures.append(f"seed {seed} {name}")
        continue
      previous = rows.get(name, {"evaluated": {}})
      row["evaluated"] = {**previous["evaluated"], **row["evaluated"]}
      rows[name] = row
      print(f"[{time.strftime('%H:%M:%S')}] seed {seed}: {name} {sorted(sets)} done",
            flush=True)
  figured = {name: {**{k: v for k, v in row.items() if k != "evaluated"},
                    **figures(row["evaluated"])} for name, row in rows.items()}
  for name, row in rows.items():
    if IN_DIST in row["evaluated"]:
      results = row["evaluated"][IN_DIST]["results"]
      figured[name]["by_source"] = by_source(results, data["source_of"])
      figured[name]["longer_by_source"] = by_source(  # what picking the longer would score
          [{"prompt": r["prompt"], "correct": len(r["chosen"]) > len(r["rejected"])}
           for r in results if len(r["chosen"]) != len(r["rejected"])], data["source_of"])
    figured[name]["longer"] = length_preference(row["evaluated"])
    figured[name]["by_length"] = accuracy_by_length(row["evaluated"])
  return {"data": data["counts"], "steps": steps_of(scale, data["pairs"]), "rows": figured,
          "failed": failures}


def row_part(name: str) -> str:
  return {ZERO_SHOT: "zero_shot", BT: "bt", BT_LENGTH: "length", STAGE1: "stage1",
          GRAM_R2: "gram_r2"}.get(name) or GRAM_ROWS[name][0]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=sorted(SCALES), default="full")
  parser.add_argument("--seeds", default="0", help="comma-separated seeds")
  parser.add_argument("--rows", default="zero_shot,ft,bt,balance,smoothing",
                      help=f"comma-separated parts of the recipe to run, of {', '.join(PARTS)}"
                      " (a part's rows use the same data and seed as in a full run)")
  parser.add_argument("--sets", default=f"{IN_DIST},ood",
                      help="in_distribution, ood or both (every row's in-distribution "
                      "evaluation runs before any out-of-distribution one)")
  parser.add_argument("--cached_only", action="store_true",
                      help="print the table of the steps already finished; run nothing")
  parser.add_argument("--time_budget_s", type=float, default=0,
                      help="start no step after this many seconds and stop a running stage "
                      "there (it resumes on the next run); 0: no limit (a device lease)")
  parser.add_argument("--workdir", default=os.path.join(
      os.path.expanduser("~"), ".cache", "gram_jax", "replicate_gram"))
  args = parser.parse_args()
  if not os.path.isdir(SHARED):
    sys.exit(f"{SHARED}: the shared data folder is missing")
  scale = SCALES[args.scale]
  replicate_steps.configure(args.cached_only, args.time_budget_s)
  args.rows = set(filter(None, args.rows.split(",")))
  args.sets = set(filter(None, args.sets.split(",")))
  if unknown := args.rows - set(PARTS):
    parser.error(f"--rows: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
  if unknown := args.sets - {IN_DIST, "ood"}:
    parser.error(f"--sets: unknown {', '.join(sorted(unknown))}")
  results = {int(s): run_seed(args, scale, int(s)) for s in args.seeds.split(",")}
  text = table(results, ROWS, {BT, BT_LENGTH})
  if curves := curve_tables(results):
    text += "\n\nLearning curves (curve pairs):\n\n" + curves
  os.makedirs(args.workdir, exist_ok=True)
  png = curves_png(results, os.path.join(args.workdir, "curves.png"))
  with open(os.path.join(args.workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"scale": args.scale, "settings": dataclasses.asdict(scale),
               "seeds": {str(k): v for k, v in results.items()}, "table": text,
               "curves": png, "finished_by": provenance.current_code_version()}, f, indent=2)
  print(text)
  print(f"learning curves: {png}")
  if failed := [f for result in results.values() for f in result["failed"]]:
    sys.exit(f"failed (left out of the table): {', '.join(failed)}")


if __name__ == "__main__":
  main()
