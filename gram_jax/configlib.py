"""Config defaults shared by every stage, named presets, and start-up validation.

Each `configs/<stage>.py` calls `stage_config(stage, preset)`; every field can be overridden
on the command line (`--config.train.learning_rate=1e-5`). `validate` runs before any model is
built or compiled, so a wrong mesh, batch or path fails in seconds with one clear line.
"""
import difflib
import json
import math
import os
from typing import Any, Callable

import jax
import ml_collections

from gram_jax import checkpoint, parallel, storage
from gram_jax.data import benchmarks, sources
from gram_jax.errors import GramError
from gram_jax.hf import gemma3_270m, smollm2
from gram_jax.inference import ranking
from gram_jax.models import lora
from gram_jax.models.config import ARCHITECTURES, ATTENTION_IMPLS

STAGES = ("pretrain", "finetune", "prover", "self_train", "evaluate", "serve", "best_of_n")
DTYPES = ("float32", "bfloat16", "float16")

# Paper hyper-parameters per model (docs/method.md §2–3); model.path points at the weights.
# The real-model presets of configs/*.py (`:qwen3-8b`): shapes in models.config.ARCHITECTURES.
MODEL_PRESETS = ("qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "llama3.2-3b",
                 "llama3.1-8b", "smollm2-135m", "gemma3-270m")
# The real models that run offline on a CPU (gram_jax.hf.smollm2, gram_jax.hf.gemma3_270m):
# float32 compute there, no remat, 1,024-token prompts (a GRAM prompt around a real pair; 64
# does not hold one). preset -> (its HF directory, the command that builds it once)
SMOLLM2 = "smollm2-135m"
SMOLLM2_BUILD = "from gram_jax.hf import smollm2; smollm2.smollm2_instruct()"
OFFLINE_MODELS = {
    SMOLLM2: (smollm2.hf_dir, SMOLLM2_BUILD),
    "gemma3-270m": (gemma3_270m.hf_dir,
                    "from gram_jax.hf import gemma3_270m; gemma3_270m.gemma3_270m()")}


def base_config(stage: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = stage
  c.workdir = os.path.join("workdir", stage)
  c.seed = 0
  c.dry_run = False  # training stages: log the step's memory plan per device, then exit
  # XLA's compiled programs kept across runs (JAX's persistent cache): a rerun, a resumed
  # run or a restarted server with the same shapes skips those compiles. "": off. The
  # JAX_COMPILATION_CACHE_DIR variable, when set, wins.
  c.compilation_cache = os.path.join("~", ".cache", "gram_jax", "jax_compilation_cache")

  c.model = ml_collections.ConfigDict()
  c.model.path = ""  # HF directory or gram_jax checkpoint; empty = tiny model from scratch
  c.model.param_dtype = "float32"
  c.model.dtype = "auto"  # compute dtype; auto = bfloat16 on accelerators, float32 on CPU
  c.model.remat = "none"  # none | full | dots
  # auto: splash on TPU, cuDNN on GPU in bf16/f16, else flash | xla | flash | splash | cudnn
  c.model.attention = "auto"
  # LoRA: rank > 0 trains low-rank adapters on these projections, the base frozen; the
  # checkpoints hold the adapters, the finished model is the merged one. dropout: on the
  # adapters' input, as PEFT's lora_dropout. quantize: the frozen base's adapted kernels
  # held as int8 or nf4 (QLoRA)
  c.model.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0,
                                                targets="q,k,v,o,gate,up,down", dropout=0.0,
                                                quantize=""))
  c.model.attention_block_q = 256  # query / key block of the flash and splash kernels
  c.model.attention_block_kv = 256
  c.model.init = ml_collections.ConfigDict(dict(  # architecture when training from scratch
      family="qwen3", hidden_size=128, intermediate_size=320, num_layers=2, num_heads=4,
      num_kv_heads=2, head_dim=32, max_position_embeddings=1024, tie_word_embeddings=True))

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""  # default: the model's directory; built-in BPE when training from scratch
  c.tokenizer.chat_template = ""  # default: the tokenizer's own

  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
  c.dcn_mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  c.rules = tuple((name, axes) for name, axes in parallel.DEFAULT_RULES)

  c.data = ml_collections.ConfigDict()
  c.data.train_files = ""  # comma-separated paths or hf://name@split; empty = built-in task
  c.data.on_bad_record = "fail"  # fail | skip (skipped records are counted in the log)
  c.data.cutoff_len = 256
  c.data.seq_len = 256
  c.data.pack = True  # several examples a row (segment ids); verdict data too
  c.data.max_pairs_per_row = 16  # packed verdict rows: judging prompts a row at most
  c.data.both_orders = True  # verdict data: every pair in both A/B orders (position balance)
  # verdict data in both orders: a pair's two orders in the same step, so every step is
  # exactly A/B balanced and contrastive (False: balanced over an epoch only)
  c.data.balanced_steps = False
  c.data.builtin_pairs = 600  # size of the built-in synthetic set when train_files is empty
  c.data.builtin_tasks = "arithmetic,comparison,category"

  c.train = ml_collections.ConfigDict()
  c.train.learning_rate = 1e-3
  c.train.warmup_ratio = 0.1
  c.train.end_lr_ratio = 0.0
  c.train.num_epochs = 1.0
  c.train.num_steps = -1  # > 0 overrides num_epochs
  c.train.per_device_batch_size = 8  # rows per data-parallel device per micro-batch
  c.train.global_batch_size = -1  # > 0: rows per optimizer step, overrides per_device
  c.train.micro_batches = 1  # gradient accumulation
  c.train.weight_decay = 0.0
  c.train.max_grad_norm = 1.0
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.eps = 1e-8
  c.train.peak_flops_per_device = 0.0  # 0 = look up by device kind
  c.train.label_smoothing = 0.1  # verdict loss; official convention (PyTorch label_smoothing)
  c.train.moment_dtype = "float32"  # Adam moments between steps: float32 | bfloat16 (half)
  c.train.memory_capacity_gb = 0.0  # per device; 0 = the device's own (unknown on CPU)
  c.train.max_bad_steps = 10  # stop after this many non-finite steps in a row (0 = never)
  c.train.loss_chunk_len = 512  # LM loss: positions projected to the vocabulary at a time (0 = all)

  c.template = ml_collections.ConfigDict()
  # auto: the model's judge card, else GRAM-RR for a reasoning judge, else GRAM (official);
  # or a name (gram, compact, gram_rr, compact_rr) or the prompt text itself.
  c.template.judge = "auto"
  c.template.labels = ("A", "B")
  c.template.prover = "default"  # default (templates.PROVER_PROMPT) or the text itself
  c.template.rationale_format = "answer_tag"  # answer_tag (released) | preferred_line

  c.eval = ml_collections.ConfigDict()
  c.eval.files = ""  # comma-separated held-out / benchmark files
  c.eval.benchmark = "auto"  # auto (from the records' fields) or one of benchmarks.BENCHMARKS
  c.eval.batch_size = 16
  c.eval.max_len = 0  # tokens of one judging prompt; 0: the judge's (release: 6,144), else 2,048
  c.eval.every_steps = 0  # 0: evaluate at the end of training only
  # > 0: score at most this many records of each evaluation file, for a first try (a record
  # is a pair; an RM-Bench item or an RMB best-of-n group counts as one); the report says so
  c.eval.max_pairs = 0
  c.eval.sample = "first"  # first: the file's first records | random: a sample seeded by seed

  # resume_step: -1 resumes from the latest complete step; N falls back to step N (a damaged
  # latest step names it), setting the later steps aside in checkpoints_set_aside/.
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=50, keep=3, async_save=True,
                                                resume_step=-1))
  c.distributed = ml_collections.ConfigDict(dict(
      mode="auto", coordinator_address="", num_processes=-1, process_id=-1))
  return c


def demo_recipe(c: ml_collections.ConfigDict, *fields: str) -> None:
  """Marks `fields` as the demo recipe's (a tiny model from scratch on the built-in task,
  where a stage config with no preset puts them): their values now are demo values, which a
  run with a real model.path may not inherit (`validate` refuses until each is set or a
  preset is named)."""
  c.demo_fields = tuple((field, field_value(c, field)) for field in fields)


def judge_reader_config(stage: str) -> ml_collections.ConfigDict:
  """base_config for a stage that reads a saved judge (evaluate, serve, best_of_n): labels
  and reasoning left to the model's judge card unless set."""
  c = base_config(stage)
  c.template.labels = ()  # the judge card's, else ("A", "B")
  c.reasoning = reasoning_config()  # a GRAM-R² judge: votes, temperature, orders, score
  return c


def reasoning_config() -> ml_collections.ConfigDict:
  """How evaluate and serve read a GRAM-R² judge; unset fields keep the model's judge card."""
  return ml_collections.ConfigDict(dict(
      mode="auto",  # auto: as the model's judge.json says (or a preset is named) | on | off
      preset="",  # release: the GRAM-RR release protocol (GRAM-RR prompt, one order,
                  # temperature 0.75, 2,048 new tokens, 8,192-token context)
      max_new_tokens=0,  # 0: the card's (or preset's)
      temperature=-1.0,  # < 0: the card's (or preset's)
      votes=0,  # voting@k: judgments in total; 0: the card's (or preset's)
      orders=0,  # 1: every judgment in the pair's given order (the release protocol); 2: half
                 # in each order (stricter); 0: the card's (or preset's)
      score="",  # verdict (vote shares, the published readout) | probability; "": the card's
  ))


def reasoning_settings(c: ml_collections.ConfigDict, card_reasoning: Any = None) -> Any:
  """The Reasoning a stage's judge runs with (None: a verdict-only GRAM readout)."""
  from gram_jax.judge_card import resolve_reasoning
  r = c.reasoning
  return resolve_reasoning(
      card_reasoning, r.mode, r.preset, max_new_tokens=r.max_new_tokens or None,
      temperature=r.temperature if r.temperature >= 0 else None, votes=r.votes or None,
      orders=r.orders or None, score=r.score or None,
      rationale_format=None if card_reasoning else c.template.rationale_format)


def nearest(name: str, known) -> str:
  """'; did you mean X?' for the closest known name, or ''."""
  close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
  match = [k for k in known if close and k.lower() == close[0]]
  return f"; did you mean {match[0]!r}?" if match else ""


def check_preset(preset: str, known) -> None:
  if preset not in known:
    raise GramError(f"unknown preset {preset!r}{nearest(preset, known)} (known: "
                    f"{', '.join(known)}; names are case-sensitive)")


def apply_model_preset(c: ml_collections.ConfigDict, preset: str,
                       stage_presets: tuple[str, ...] = ()) -> None:
  """Real-model presets: bf16 compute, FSDP over all devices, remat, long cutoff; SmolLM2
  points model.path at its offline-built directory. `stage_presets` are the names a stage
  adds itself (for the error's list)."""
  check_preset(preset, MODEL_PRESETS + stage_presets)
  c.model.init.family = ARCHITECTURES[preset]["family"]
  if preset in OFFLINE_MODELS:
    c.model.path = OFFLINE_MODELS[preset][0]()
    c.data.cutoff_len = 1024
    c.data.seq_len = 1024
    c.checkpoint.every_steps = 50
    return
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.data.cutoff_len = 2048
  c.data.seq_len = 2048
  c.checkpoint.every_steps = 500


def describe(c: ml_collections.ConfigDict, config_arg: str = "") -> str:
  """The start-up line: what this run is (stage, config and preset, model, devices and mesh,
  compute dtype, attention, prompt and chat template, workdir)."""
  devices = jax.devices()
  shape = " ".join(f"{name}={size}" for name, size in mesh(c).shape.items())
  if c.model.path:
    model = c.model.path
  else:
    i = c.model.init
    model = (f"tiny {i.family} from scratch ({i.num_layers} layers, width {i.hidden_size}, "
             f"built-in tokenizer)")
  named = lambda text: text if len(text) <= 40 and "\n" not in text else \
      f"given as text ({len(text)} characters)"
  if c.stage == "pretrain":
    prompt = "GRAM pre-training"
  elif c.stage == "prover":
    prompt = f"prover {named(c.template.prover)}"
  elif c.template.judge == "auto":
    prompt = "auto (the judge card's)"
  else:
    prompt = named(c.template.judge)
  chat = "set in config" if c.tokenizer.chat_template else "the tokenizer's own"
  return (f"run: stage {c.stage} | config {config_arg or '?'} | model {model} | "
          f"{len(devices)} {devices[0].platform} device(s), {jax.process_count()} process(es), "
          f"mesh {shape} | compute {compute_dtype(c)}, attention {c.model.attention} | "
          f"prompt template {prompt}, chat template {chat} | workdir {c.workdir}")


def mesh(c: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The run's device mesh: config.mesh within a slice, config.dcn_mesh across slices."""
  return parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())


def chat_template(c: ml_collections.ConfigDict) -> str | None:
  """The chat template every prompt of the run is wrapped in (None: the tokenizer's own)."""
  return c.tokenizer.chat_template or None


def data_parallel_size(c: ml_collections.ConfigDict) -> int:
  shape = mesh(c).shape
  return shape["data"] * shape["fsdp"]


def compute_dtype(c: ml_collections.ConfigDict) -> str:
  if c.model.dtype != "auto":
    return c.model.dtype
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def rows_per_process(c: ml_collections.ConfigDict) -> int:
  """Rows each process feeds per micro-batch, after checking the batch splits evenly."""
  dp = data_parallel_size(c)
  micro = c.train.micro_batches
  if micro < 1:
    raise GramError(f"config.train.micro_batches must be >= 1, got {micro}")
  if c.train.global_batch_size > 0:
    if c.train.global_batch_size % (dp * micro):
      raise GramError(
          f"config.train.global_batch_size ({c.train.global_batch_size}) is not divisible by "
          f"data-parallel size {dp} x micro_batches {micro}")
    rows = c.train.global_batch_size // micro
  else:
    if c.train.per_device_batch_size < 1:
      raise GramError("config.train.per_device_batch_size must be >= 1")
    rows = c.train.per_device_batch_size * dp
  if rows % jax.process_count():
    raise GramError(f"config.train: {rows} rows per micro-batch do not split over "
                    f"{jax.process_count()} processes")
  rows //= jax.process_count()
  # A step's token arrays on the host (ids, targets, positions, segments: int32), checked
  # before numpy tries (a batch of 10^12 rows ended in a MemoryError).
  step_bytes = rows * micro * c.data.seq_len * 4 * 4
  host_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if step_bytes > host_bytes // 2:
    raise GramError(f"config.train: a step of {rows * micro:,} rows x {c.data.seq_len} "
                    f"positions per process needs {step_bytes / 2**30:,.1f} GiB of host "
                    f"memory for its tokens alone, over half of this machine's "
                    f"{host_bytes / 2**30:,.1f} GiB; lower train.global_batch_size (or "
                    "per_device_batch_size) or data.seq_len")
  return rows


def template_setting(c: ml_collections.ConfigDict) -> str | None:
  """config.template.judge as the user set it (None: auto)."""
  return None if c.template.judge == "auto" else c.template.judge


def judge_template(c: ml_collections.ConfigDict, reasoning: bool = False) -> str:
  """The prompt a training stage's judge uses (judge_card.judge_prompt's rule): a verdict
  judge (finetune, baselines) or a reasoning judge (the self-trained policy)."""
  from gram_jax.judge_card import Reasoning, judge_prompt
  return judge_prompt(template_setting(c), Reasoning() if reasoning else None,
                      template_field="config.template.judge",
                      reasoning_field=f"config.stage={c.stage}")


def builtin_tasks(c: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(data_files(c.data.builtin_tasks))


def prover_template(c: ml_collections.ConfigDict) -> str:
  from gram_jax.text import templates
  return templates.PROVER_PROMPT if c.template.prover == "default" else c.template.prover


SELF_TRAIN_FILES = ("seed_files", "labeled_files", "unlabeled_files", "heldout_files",
                    "task_files", "validation_files")


def _self_train_files(c: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """Real-data self-training needs seed proofs, labeled and unlabeled pairs (held-out is
  optional); without any of them the built-in task supplies all four."""
  given = {f: c.self_train[f] for f in SELF_TRAIN_FILES}
  if any(data_files(v) for v in given.values()) or not builtin_tasks(c):
    for field in SELF_TRAIN_FILES[:3]:
      if not data_files(given[field]):
        raise GramError(f"config.self_train.{field}: required when not running the built-in "
                        "task (set seed_files, labeled_files and unlabeled_files)")
    if c.self_train.final_finetune_steps and not data_files(given["task_files"]):
      raise GramError("config.self_train.task_files: required for task adaptation "
                      "(final_finetune_steps > 0): the target task's own labeled pairs, not "
                      "the warm-start labeled_files (or set final_finetune_steps=0)")
    if c.self_train.final_finetune_steps and \
        set(data_files(given["task_files"])) <= set(data_files(given["labeled_files"])):
      raise GramError("config.self_train.task_files: the same files as labeled_files; task "
                      "adaptation would retrain on warm-start data")
    if c.self_train.export == "best_validation" and not data_files(given["validation_files"]):
      raise GramError("config.self_train.validation_files: required for export=best_validation "
                      "(labeled pairs that are not held-out test pairs), or set export=final")
    if c.self_train.export == "best_validation" and set(data_files(given["validation_files"])) \
        & set(data_files(given["heldout_files"])):
      raise GramError("config.self_train.validation_files: a held-out file; the exported "
                      "model must not be chosen on the pairs the report tests on")
  return [(f"self_train.{f}", v) for f, v in given.items()]


def lora_spec(c: ml_collections.ConfigDict) -> lora.Lora | None:
  """config.model.lora as a spec, or None when its rank is 0 (full training)."""
  if c.model.lora.rank <= 0:
    return None
  return lora.Lora(lora.parse_targets(c.model.lora.targets), c.model.lora.rank,
                   c.model.lora.alpha, c.model.lora.dropout, c.model.lora.quantize)


def data_files(value: str) -> list[str]:
  return [p.strip() for p in value.split(",") if p.strip()]


def check_writable(workdir: str) -> None:
  """Creates the output directory and writes a probe file: a run must not train for hours
  and then fail to save."""
  storage.check_reachable(workdir, "config.workdir")
  probe = os.path.join(workdir, f".write_test.{jax.process_index()}.{os.getpid()}")
  try:
    storage.makedirs(workdir)
    storage.write_atomic(probe, "ok")
    storage.remove(probe)
  except GramError as e:
    raise GramError(f"config.workdir: {workdir}: not writable ({e})") from None
  except OSError as e:
    raise GramError(f"config.workdir: {workdir}: not writable ({e.strerror or e})") from None


# Fields a run may change when it resumes: they decide how a step is computed, checkpointed,
# evaluated or reported, not what it trains (micro-batches and kernels compute the same sums).
RESUME_NEUTRAL = ("workdir", "dry_run", "demo_fields", "compilation_cache", "mesh.", "dcn_mesh.", "rules",
                  "distributed.", "checkpoint.", "eval.", "model.remat", "model.attention",
                  "train.micro_batches", "train.memory_capacity_gb",
                  "train.peak_flops_per_device", "train.max_bad_steps", "train.loss_chunk_len",
                  "self_train.")  # a self-training job's sub-runs carry their own train.*


def result_fields(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields whose change makes a checkpoint another run's: a run resumes only under the
  same values (RESUME_NEUTRAL excepted)."""
  flat = checkpoint.flat_fields(json.loads(c.to_json_best_effort()))
  return {k: v for k, v in flat.items()
          if not any(k == n or (n.endswith(".") and k.startswith(n)) for n in RESUME_NEUTRAL)}


Rule = Callable[[Any], str | None]  # what is wrong with a value, or None


def one_of(*allowed: Any) -> Rule:
  return lambda value: None if value in allowed else f"{value!r} not in {allowed}"


def at_least(low: float, meaning: str = "") -> Rule:
  note = f" ({meaning})" if meaning else ""
  return lambda value: None if value >= low else f"must be >= {low}{note}, got {value}"


def positive(value: Any) -> str | None:
  """A finite number above zero (a NaN or infinite learning rate trains to NaN)."""
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
  return None if ok else f"must be a finite number > 0, got {value}"


def count_or_unset(value: Any) -> str | None:
  """A count >= 1, or -1 for 'not set'."""
  return None if value == -1 or value >= 1 else f"must be >= 1, or -1 (unset), got {value}"


def within(low: float, high: float, closed: bool = False) -> Rule:
  """[low, high), or [low, high] when `closed`."""
  inside = lambda value: low <= value <= high if closed else low <= value < high
  interval = f"[{low}, {high}{']' if closed else ')'}"
  return lambda value: None if inside(value) else f"must be in {interval}, got {value}"


# Start-up checks of single fields, section by section as base_config and the stage configs
# (configs/*.py) define them; a stage's config is checked on the fields it has.
FIELD_RULES: dict[str, Rule] = {
    "stage": one_of(*STAGES),
    "model.param_dtype": one_of(*DTYPES),
    "model.dtype": one_of(*DTYPES, "auto"),
    "model.remat": one_of("none", "full", "dots"),
    "model.attention": one_of(*ATTENTION_IMPLS),
    "model.lora.rank": at_least(0, "0: no LoRA"),
    "model.lora.alpha": positive,
    "model.lora.dropout": within(0.0, 1.0),
    "model.lora.quantize": one_of(*lora.QUANTIZERS),
    "model.attention_block_q": at_least(1, "tokens"),
    "model.attention_block_kv": at_least(1, "tokens"),
    "data.on_bad_record": one_of("fail", "skip"),
    "data.max_pairs_per_row": at_least(1),
    "checkpoint.resume_step": at_least(-1, "-1: the latest complete step"),
    "train.learning_rate": positive,
    "train.warmup_ratio": within(0.0, 1.0, closed=True),
    "train.end_lr_ratio": within(0.0, 1.0, closed=True),
    "train.num_epochs": positive,
    "train.num_steps": count_or_unset,
    "train.per_device_batch_size": at_least(1),
    "train.global_batch_size": count_or_unset,
    "train.micro_batches": at_least(1),
    "train.weight_decay": within(0.0, math.inf),
    "train.max_grad_norm": positive,
    "train.b1": within(0.0, 1.0),
    "train.b2": within(0.0, 1.0),
    "train.eps": positive,
    "train.label_smoothing": within(0.0, 1.0),
    "train.moment_dtype": one_of("float32", "bfloat16"),
    "train.loss_chunk_len": at_least(0, "0: every position at once"),
    "eval.benchmark": one_of("auto", *benchmarks.BENCHMARKS),
    "eval.max_len": at_least(0, "0: the judge's own"),
    "eval.max_pairs": at_least(0, "0: every record"),
    "eval.sample": one_of("first", "random"),
    "serve.rlhf_readout": one_of("probability", "verdict"),
    "serve.keepalive_s": positive,
    "serve.header_timeout_s": positive,
    "serve.max_new_shapes_per_minute": at_least(1),
    "self_train.policy_init": one_of("base", "previous"),
    "self_train.final_mode": one_of("rationale", "verdict"),
    "self_train.export": one_of("final", "best_validation"),
    "self_train.judge_samples": at_least(1),
    "self_train.learning_rate": positive,
    "self_train.round_learning_rate": positive,
    "self_train.min_vote_share": within(0.5, 1.0, closed=True),
    "best_of_n.method": one_of(*ranking.METHODS),
}
TRAINING_STAGES = ("pretrain", "finetune", "prover", "self_train")


def field_value(c: ml_collections.ConfigDict, path: str) -> Any:
  """The value at a dotted path, or KeyError when the stage's config has no such field."""
  for name in path.split("."):
    c = c[name]
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Every check that can fail before compiling, with the field at fault in the message:
  single fields (FIELD_RULES), then settings that depend on each other, then paths, data
  files and devices."""
  for path, rule in FIELD_RULES.items():
    try:
      problem = rule(field_value(c, path))
    except KeyError:
      continue
    if problem:
      raise GramError(f"config.{path}: {problem}")
  _check_settings_together(c)
  _check_paths_and_devices(c)
  _check_data_files(c)
  if c.stage != "serve":
    check_writable(c.workdir)


def _check_settings_together(c: ml_collections.ConfigDict) -> None:
  lora_settings = c.model.lora
  if lora_settings.rank:
    try:
      lora.parse_targets(lora_settings.targets)
    except ValueError as e:
      raise GramError(str(e)) from None
  if lora_settings.quantize and not lora_settings.rank:
    raise GramError("config.model.lora.quantize: a quantized base trains only adapters: set "
                    "config.model.lora.rank > 0 too")
  if c.data.balanced_steps and not c.data.both_orders:
    raise GramError("config.data.balanced_steps puts both A/B orders of a pair in one step: "
                    "it needs config.data.both_orders=true")
  _check_no_demo_recipe(c)
  if c.data.cutoff_len > c.data.seq_len:
    raise GramError(f"config.data.cutoff_len ({c.data.cutoff_len}) exceeds "
                    f"config.data.seq_len ({c.data.seq_len})")
  if c.stage in ("evaluate", "serve", "best_of_n") and not c.model.path:
    raise GramError(f"config.model.path: required for stage {c.stage}")
  if c.stage == "evaluate" and not data_files(c.eval.files):
    raise GramError("config.eval.files: required for stage evaluate")
  if c.stage == "best_of_n" and not c.best_of_n.input:
    raise GramError("config.best_of_n.input: required (rows with prompt and responses)")
  if c.stage == "self_train" and c.self_train.judge_samples > 1 and \
      c.self_train.judge_temperature <= 0:
    raise GramError(f"config.self_train.judge_temperature must be > 0 to sample "
                    f"{c.self_train.judge_samples} judgments per order (greedy ones are all "
                    "the same)")
  if "reasoning" in c:
    try:
      on = c.copy_and_resolve_references()
      with on.unlocked():
        on.reasoning.mode = "on"
      reasoning_settings(on)
    except GramError as e:
      raise GramError(f"config.reasoning: {e}") from None


def _check_no_demo_recipe(c: ml_collections.ConfigDict) -> None:
  """A real model never trains with a demo value it did not ask for (the compact prompt, a
  from-scratch learning rate, a 64-token cutoff): name a preset or set the field."""
  if not c.model.path or c.stage not in TRAINING_STAGES:
    return
  kept = [(field, value) for field, value in c.get("demo_fields", ())
          if field_value(c, field) == value]
  if kept:
    values = ", ".join(f"{field}={value!r}" for field, value in kept)
    raise GramError(
        f"config.model.path: configs/{c.stage}.py without a preset is the demo recipe for a "
        f"tiny model from scratch, and this run would keep its {values}; name a preset for a "
        f"real model (--config=configs/{c.stage}.py:{SMOLLM2}; presets: "
        f"{', '.join(MODEL_PRESETS)}) or set those fields")


def _check_paths_and_devices(c: ml_collections.ConfigDict) -> None:
  paths = [(c.workdir, "config.workdir"), (c.model.path, "config.model.path"),
           (c.tokenizer.path, "config.tokenizer.path")]
  if c.stage == "best_of_n":
    paths.append((c.best_of_n.output, "config.best_of_n.output"))
  for value, field in paths:
    storage.check(value, field)
  if c.stage in TRAINING_STAGES:
    storage.check_checkpoints(c.workdir, "config.workdir")
  for value, field in paths:
    storage.check_reachable(value, field)
  if c.model.path and not storage.isdir(c.model.path):
    build = [command for hf_dir, command in OFFLINE_MODELS.values()
             if c.model.path == hf_dir()]
    hint = f"; build it once with: python -c '{build[0]}'" if build else ""
    raise GramError(f"config.model.path: {c.model.path}: directory not found{hint}")
  data_parallel_size(c)  # checks the mesh against the devices
  if c.stage in TRAINING_STAGES:
    rows_per_process(c)


def _check_data_files(c: ml_collections.ConfigDict) -> None:
  """Every data file named: a usable scheme, reachable, and there."""
  fields = [("data.train_files", c.data.train_files), ("eval.files", c.eval.files)]
  if c.stage == "self_train":
    fields += _self_train_files(c)
  if c.stage == "best_of_n":
    fields.append(("best_of_n.input", c.best_of_n.input))
  for field, value in fields:
    for path in data_files(value):
      storage.check(path, f"config.{field}", data=True)
      storage.check_reachable(path, f"config.{field}")
      try:
        sources.check_exists(path)
      except GramError as e:
        raise GramError(f"config.{field}: {e}") from None
