"""Convert between a Hugging Face directory and a gram_jax (Orbax) model checkpoint.

  python -m gram_jax.convert --src=HF_DIR --dst=CKPT --to=orbax
  python -m gram_jax.convert --src=CKPT --dst=HF_DIR --to=hf [--max_shard_size=5GB]
"""
import os
import sys
from typing import Any

from absl import app, flags

from gram_jax import checkpoint, cli_util
from gram_jax.errors import GramError
from gram_jax.hf.export import save_pretrained
from gram_jax.pretrained import load_pretrained
from gram_jax.tokenizer import load_tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "HF model directory or gram_jax checkpoint.", required=True)
flags.DEFINE_string("dst", None, "Output directory.", required=True)
flags.DEFINE_enum("to", None, ["hf", "orbax"], "Output format.", required=True)
flags.DEFINE_string("dtype", None, "Parameter dtype of the output (default: as stored).")
flags.DEFINE_string("max_shard_size", "5GB", "Largest safetensors file when writing HF.")


def _tokenizer_if_any(src: str) -> Any:
  has_files = any(name.startswith("tokenizer") for name in os.listdir(src))
  return load_tokenizer(src) if has_files else None


def convert(src: str, dst: str, to: str, dtype: str | None = None,
            max_shard_size: str = "5GB") -> str:
  """Loads `src` in whatever format it is and writes it to `dst` in format `to`."""
  model = load_pretrained(src, dtype=dtype)
  tokenizer = _tokenizer_if_any(src)
  if to == "hf":
    return save_pretrained(model, dst, tokenizer=tokenizer, max_shard_size=max_shard_size)
  return checkpoint.save_model(model, dst, tokenizer=tokenizer)


def main(argv: list[str]) -> None:
  del argv
  cli_util.quiet_library_logs()
  try:
    out = convert(FLAGS.src, FLAGS.dst, FLAGS.to, FLAGS.dtype, FLAGS.max_shard_size)
  except GramError as e:
    sys.exit(f"error: {e}")
  print(f"wrote {FLAGS.to} model to {out}")


if __name__ == "__main__":
  app.run(main)
