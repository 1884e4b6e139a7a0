"""ModelConfig: the one description of a decoder that every other module reads."""
import dataclasses
import math
from typing import Any, Mapping

from gram_jax.models import families

FAMILIES = tuple(families.RECORDS)
ROPE_TYPES = ("default", "linear", "llama3")
MLP_ACTIVATIONS = ("silu", "gelu_tanh")
LAYER_TYPES = ("full", "sliding")
ATTENTION_IMPLS = ("auto", "xla", "flash", "splash", "cudnn")  # models/attention.py


_POSITIVE_REALS = ("rms_norm_eps", "rope_theta", "rope_factor", "rope_low_freq_factor",
                   "rope_high_freq_factor")
_POSITIVE_INTS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                  "num_kv_heads", "head_dim", "max_position_embeddings",
                  "rope_original_max_position")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a decoder (Llama, Qwen2, Qwen3, Gemma 3 text) plus its dtypes. The
  fields after `qk_norm` are decoder features a family may switch on (models/families.py)."""
  family: str = "qwen3"
  vocab_size: int = 512
  hidden_size: int = 64
  intermediate_size: int = 128
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_position: int = 8192
  max_position_embeddings: int = 4096
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  qk_norm: bool = True
  norm_weight_offset: float = 0.0  # RMSNorm scales by (offset + w) in float32 (Gemma: 1)
  sandwich_norms: bool = False  # also norm the attention and MLP outputs (Gemma)
  embed_scale: bool = False  # embeddings times sqrt(hidden_size) (Gemma)
  mlp_activation: str = "silu"
  query_pre_attn_scalar: float = 0.0  # scores scaled by its -1/2 power (0: head_dim's)
  sliding_window: int = 0  # keys a "sliding" layer's query sees, itself included (0: none)
  layer_types: tuple[str, ...] = ()  # per layer, "full" or "sliding" (empty: all full)
  rope_local_theta: float = 10000.0  # the RoPE base of sliding layers
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype
  remat: str = "none"  # none | full | dots (see models/decoder.py)
  # auto: splash on TPU, cuDNN on GPU in bf16/f16, else flash | xla | flash | splash | cudnn
  attention: str = "auto"
  attention_block_q: int = 256  # query / key block of the flash and splash kernels
  attention_block_kv: int = 256

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(f"rope_type must be one of {ROPE_TYPES}, got {self.rope_type!r}")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")
    if min(self.attention_block_q, self.attention_block_kv) < 1:
      raise ValueError("attention_block_q and attention_block_kv must be positive, got "
                       f"{self.attention_block_q} and {self.attention_block_kv}")
    for name in _POSITIVE_REALS:  # a NaN rope_theta or a negative eps make every score NaN
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or \
          not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    for name in _POSITIVE_INTS:
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if self.mlp_activation not in MLP_ACTIVATIONS:
      raise ValueError(f"mlp_activation must be one of {MLP_ACTIVATIONS}, got "
                       f"{self.mlp_activation!r}")
    if self.layer_types and (len(self.layer_types) != self.num_layers
                             or set(self.layer_types) - set(LAYER_TYPES)):
      raise ValueError(f"layer_types must give one of {LAYER_TYPES} for each of the "
                       f"{self.num_layers} layers, got {list(self.layer_types)}")
    if "sliding" in self.layer_types and self.sliding_window < 1:
      raise ValueError(f"sliding_window must be a positive integer when layers slide, got "
                       f"{self.sliding_window!r}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")

  def window_of(self, layer: int) -> int:
    """The sliding window of layer `layer` (0: it attends over every earlier key)."""
    return self.sliding_window if self.layer_types[layer:layer + 1] == ("sliding",) else 0

  def rope_theta_of(self, layer: int) -> float:
    return self.rope_local_theta if self.window_of(layer) else self.rope_theta

  def replace(self, **changes: Any) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown ModelConfig fields: {unknown}")
    values = dict(values)
    for name in ("eos_token_id", "layer_types"):
      if isinstance(values.get(name), list):
        values[name] = tuple(values[name])
    return cls(**values)

  def num_params(self) -> int:
    """Parameter count, used for FLOP estimates and memory planning."""
    e, h, kv, d, m = (self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim,
                      self.intermediate_size)
    attn = e * h * d * 2 + e * kv * d * 2
    if self.qkv_bias:
      attn += (h + 2 * kv) * d
    if self.qk_norm:
      attn += 2 * d
    layer = attn + 3 * e * m + (4 if self.sandwich_norms else 2) * e
    head = 0 if self.tie_word_embeddings else e * self.vocab_size
    return self.num_layers * layer + self.vocab_size * e + e + head


def tiny_config(family: str = "qwen3", **overrides: Any) -> ModelConfig:
  """A small model of the given family: for tests and the CPU demo."""
  return ModelConfig(family=family, **{**families.family(family).features, **overrides})


# Shapes of public checkpoints (no weights): the presets of configs/*.py name these, and
# benchmarks and from-scratch runs build them.
ARCHITECTURES = {
    "tiny": dict(family="qwen3", vocab_size=1024, hidden_size=128, intermediate_size=320,
                 num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                 tie_word_embeddings=True),
    "small": dict(family="llama", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                  num_layers=8, num_heads=8, num_kv_heads=4, head_dim=64, qk_norm=False,
                  tie_word_embeddings=False),
    "llama3.2-1b": dict(family="llama", vocab_size=128256, hidden_size=2048,
                        intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8,
                        head_dim=64, rope_theta=500000.0, rope_type="llama3", rope_factor=32.0,
                        rope_original_max_position=8192, tie_word_embeddings=True,
                        qk_norm=False),
    "qwen3-1.7b": dict(family="qwen3", vocab_size=151936, hidden_size=2048,
                       intermediate_size=6144, num_layers=28, num_heads=16, num_kv_heads=8,
                       head_dim=128, rope_theta=1000000.0, tie_word_embeddings=True,
                       rms_norm_eps=1e-6),
    "llama3.2-3b": dict(family="llama", vocab_size=128256, hidden_size=3072,
                        intermediate_size=8192, num_layers=28, num_heads=24, num_kv_heads=8,
                        head_dim=128, rope_theta=500000.0, rope_type="llama3", rope_factor=32.0,
                        rope_original_max_position=8192, tie_word_embeddings=True,
                        qk_norm=False),
    "llama3.1-8b": dict(family="llama", vocab_size=128256, hidden_size=4096,
                        intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
                        head_dim=128, rope_theta=500000.0, rope_type="llama3", rope_factor=8.0,
                        rope_original_max_position=8192, tie_word_embeddings=False,
                        qk_norm=False),
    "qwen3-4b": dict(family="qwen3", vocab_size=151936, hidden_size=2560,
                     intermediate_size=9728, num_layers=36, num_heads=32, num_kv_heads=8,
                     head_dim=128, rope_theta=1000000.0, tie_word_embeddings=True,
                     rms_norm_eps=1e-6),
    "qwen3-8b": dict(family="qwen3", vocab_size=151936, hidden_size=4096,
                     intermediate_size=12288, num_layers=36, num_heads=32, num_kv_heads=8,
                     head_dim=128, rope_theta=1000000.0, tie_word_embeddings=False,
                     rms_norm_eps=1e-6),
    "qwen3-14b": dict(family="qwen3", vocab_size=151936, hidden_size=5120,
                      intermediate_size=17408, num_layers=40, num_heads=40, num_kv_heads=8,
                      head_dim=128, rope_theta=1000000.0, tie_word_embeddings=False,
                      rms_norm_eps=1e-6),
    "smollm2-135m": dict(family="llama", vocab_size=49152, hidden_size=576,
                         intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
                         head_dim=64, rope_theta=100000.0, tie_word_embeddings=True,
                         qk_norm=False, rms_norm_eps=1e-5),
    "gemma3-270m": dict(family="gemma3_text", vocab_size=262144, hidden_size=640,
                        intermediate_size=2048, num_layers=18, num_heads=4, num_kv_heads=1,
                        head_dim=256, rope_theta=1000000.0, rope_local_theta=10000.0,
                        query_pre_attn_scalar=256.0, sliding_window=512,
                        layer_types=(("sliding",) * 5 + ("full",)) * 3,
                        tie_word_embeddings=True, max_position_embeddings=32768),
}


ATTENTION_FIELDS = ("attention", "attention_block_q", "attention_block_kv")


def as_run(saved: ModelConfig, dtype: str | None = None, compute_dtype: str | None = None,
           attention: Mapping[str, Any] | None = None) -> ModelConfig:
  """A saved model's config as this run runs it: parameters in `dtype` and activations in
  `compute_dtype` (None: `dtype`, else as saved), and the run's attention kernel and block
  sizes (ATTENTION_FIELDS; None: as saved). These change how the model runs, never what it
  computes; the one rule every loader applies."""
  unknown = sorted(set(attention or {}) - set(ATTENTION_FIELDS))
  if unknown:
    raise ValueError(f"not attention settings: {unknown}")
  return saved.replace(param_dtype=dtype or saved.param_dtype,
                       dtype=compute_dtype or dtype or saved.dtype, **dict(attention or {}))


def architecture(name: str, **overrides: Any) -> ModelConfig:
  """A public checkpoint's shape, with its family's features."""
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
  shape = ARCHITECTURES[name]
  return ModelConfig(**{**families.family(shape["family"]).features, **shape, **overrides})
