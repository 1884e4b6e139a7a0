"""Convert between a Hugging Face directory and a gram_jax (Orbax) model checkpoint.

  python -m gram_jax.convert --src=HF_DIR --dst=CKPT --to=orbax
  python -m gram_jax.convert --src=CKPT --dst=HF_DIR --to=hf [--max_shard_size=5GB]
  python -m gram_jax.convert --src=LORA_RUN --dst=ADAPTER_DIR --to=peft   # PEFT adapter
  python -m gram_jax.convert --src=HF_DIR --adapter=PEFT_DIR --dst=OUT --to=hf|orbax  # merged
  python -m gram_jax.convert --src=RUN --dst=HF_DIR --to=hf --push_to_hub=ORG/NAME \
      [--private] [--base_model=Qwen/Qwen3-8B] [--stages=pretrain,finetune] \
      [--datasets=...] [--eval_report=EVAL_WORKDIR]       # token: $HF_TOKEN
"""
import os
from typing import Any

from absl import app, flags

from gram_jax import checkpoint, cli_util, storage
from gram_jax.errors import GramError
from gram_jax.hf import hub, peft
from gram_jax.hf.export import save_pretrained
from gram_jax.judge_card import JUDGE_CARD
from gram_jax.pretrained import load_pretrained, load_tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "HF model directory or gram_jax checkpoint.", required=True)
flags.DEFINE_string("dst", None, "Output directory.", required=True)
flags.DEFINE_enum("to", None, ["hf", "orbax", "peft"],
                  "Output format (peft: a LoRA run's adapters as a PEFT directory).",
                  required=True)
flags.DEFINE_string("adapter", "", "A PEFT LoRA directory to merge into --src before writing.")
flags.DEFINE_string("dtype", None, "Parameter dtype of the output (default: as stored).")
flags.DEFINE_string("max_shard_size", "5GB", "Largest safetensors file when writing HF.")
flags.DEFINE_string("push_to_hub", None, "Upload the HF export to this Hub repo (ORG/NAME).")
flags.DEFINE_bool("private", False, "Create the Hub repository as private.")
flags.DEFINE_string("base_model", "", "Model card: the model training started from.")
flags.DEFINE_list("stages", [], "Model card: the gram_jax stages that made the model.")
flags.DEFINE_list("datasets", [], "Model card: training datasets.")
flags.DEFINE_string("eval_report", "", "Model card: evaluate-stage workdir or its report.md.")


def _tokenizer_if_any(src: str) -> Any:
  has_files = any(name.startswith("tokenizer") for name in storage.listdir(src))
  return load_tokenizer(src) if has_files else None


def _copy_judge_card(src: str, out: str) -> None:
  """How to read the model as a judge travels with it."""
  if storage.isfile(os.path.join(src, JUDGE_CARD)):
    storage.write_atomic(os.path.join(out, JUDGE_CARD),
                         storage.read_bytes(os.path.join(src, JUDGE_CARD)))


def convert(src: str, dst: str, to: str, dtype: str | None = None,
            max_shard_size: str = "5GB", adapter: str = "") -> str:
  """Loads `src` in whatever format it is (merging a PEFT `adapter` into it) and writes it
  to `dst` in format `to`; `to="peft"` writes a LoRA run's adapters alone."""
  if to == "peft":
    if adapter:
      raise GramError("--adapter merges an adapter into a model: it does not go with --to=peft")
    adapters, spec, base = checkpoint.load_run_adapters(src)
    out = peft.save_adapter(adapters, spec, dst, base)
    _copy_judge_card(src, out)
    return out
  model = load_pretrained(src, dtype=dtype)
  if adapter:
    model = peft.apply_adapter(model, adapter)
  tokenizer = _tokenizer_if_any(src)
  if to == "hf":
    out = save_pretrained(model, dst, tokenizer=tokenizer, max_shard_size=max_shard_size)
    _copy_judge_card(src, out)
    return out
  return checkpoint.save_model(model, dst, tokenizer=tokenizer)


def main(argv: list[str]) -> None:
  del argv
  cli_util.quiet_library_logs()
  with cli_util.one_line_errors():
    if FLAGS.push_to_hub and FLAGS.to != "hf":
      raise GramError("--push_to_hub needs --to=hf")
    paths = ((FLAGS.src, "--src"), (FLAGS.dst, "--dst"), (FLAGS.adapter, "--adapter"))
    for value, flag in paths[:3 if FLAGS.adapter else 2]:
      storage.check(value, flag)
      storage.check_reachable(value, flag)
    if FLAGS.push_to_hub and storage.is_remote(FLAGS.dst):
      raise GramError("--push_to_hub uploads a local folder: give a local --dst")
    out = convert(FLAGS.src, FLAGS.dst, FLAGS.to, FLAGS.dtype, FLAGS.max_shard_size,
                  FLAGS.adapter)
    print(f"wrote {FLAGS.to} model to {out}")
    if FLAGS.push_to_hub:
      card = hub.model_card(out, FLAGS.push_to_hub, FLAGS.base_model, FLAGS.stages,
                            FLAGS.datasets, FLAGS.eval_report)
      with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)
      print(f"pushed to {hub.push(out, FLAGS.push_to_hub, FLAGS.private)}")


if __name__ == "__main__":
  app.run(main)
