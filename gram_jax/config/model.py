"""Sections `model` and `tokenizer`: what model a run trains or reads and how it runs; the
real-model presets; views: the compute dtype, the attention settings, the LoRA spec."""
import difflib
from typing import Any

import jax
import ml_collections

from gram_jax.config.rules import Rule, at_least, one_of, positive, within
from gram_jax.errors import GramError
from gram_jax.hf import gemma3_270m, smollm2
from gram_jax.models import lora
from gram_jax.models.config import ARCHITECTURES, ATTENTION_IMPLS

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


def add_defaults(c: ml_collections.ConfigDict) -> None:
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


RULES: dict[str, Rule] = {
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
}


def check_lora(c: ml_collections.ConfigDict) -> None:
  """LoRA targets that exist; a quantized base only under adapters."""
  lora_settings = c.model.lora
  if lora_settings.rank:
    try:
      lora.parse_targets(lora_settings.targets)
    except ValueError as e:
      raise GramError(str(e)) from None
  if lora_settings.quantize and not lora_settings.rank:
    raise GramError("config.model.lora.quantize: a quantized base trains only adapters: set "
                    "config.model.lora.rank > 0 too")


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


def compute_dtype(c: ml_collections.ConfigDict) -> str:
  if c.model.dtype != "auto":
    return c.model.dtype
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def attention_settings(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The attention kernel and its block sizes, as ModelConfig fields."""
  return {"attention": c.model.attention, "attention_block_q": c.model.attention_block_q,
          "attention_block_kv": c.model.attention_block_kv}


def lora_spec(c: ml_collections.ConfigDict) -> lora.Lora | None:
  """config.model.lora as a spec, or None when its rank is 0 (full training)."""
  if c.model.lora.rank <= 0:
    return None
  return lora.Lora(lora.parse_targets(c.model.lora.targets), c.model.lora.rank,
                   c.model.lora.alpha, c.model.lora.dropout, c.model.lora.quantize)
