"""`bash bench/gpu_suite.sh` rehearsed on the CPU at a tiny shape (GPU_SUITE_REHEARSAL=1):
every part runs the command it runs on a lent GPU, so a part never breaks where nobody sees
it. On 2026-12-04, on an H200, `attention` crashed (float32 handed to cuDNN) and `train
--peers=torch_compile` crashed (KeyError when gram_jax was not among the peers)."""
import os
import re
import subprocess

from tests.conftest import SHARED_DATA
from tests.helpers import cli

PARTS = ("parity", "attention", "train", "profile", "growth", "loss", "score8b", "generate8b",
         "load8b", "score", "generate")


def test_every_part_of_the_gpu_suite_runs_on_the_cpu(tmp_path):
  parts = PARTS + (("finetune",) if os.path.isdir(os.path.join(SHARED_DATA, "hh-rlhf"))
                   else ())
  env = {**cli.main_env(), "GPU_SUITE_REHEARSAL": "1", "OUT": str(tmp_path),
         "PYTHONPATH": cli.ROOT}
  env.pop("XLA_FLAGS", None)  # one device, as the GPU has
  result = subprocess.run(["bash", "bench/gpu_suite.sh", *parts], cwd=cli.ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  for part in parts:
    assert re.search(rf"^== {part}: \d+ s$", result.stdout, re.M), part
  files = {"parity": "parity.txt", "attention": "attention.json", "train": "train.json",
           "profile": "profile.json", "growth": "growth.json", "loss": "loss_memory.json",
           "finetune": "finetune.json", "score8b": "score8b.json",
           "generate8b": "generate8b.json", "load8b": "load8b.json", "score": "score.json",
           "generate": "generate.json"}
  for part in parts:
    text = (tmp_path / files[part]).read_text()
    assert "Traceback" not in text and "Error" not in text, f"{part}: {text[-2000:]}"
    if part == "parity":
      assert re.search(r"\d+ passed", text) and "failed" not in text, text
    else:
      assert text.rstrip().endswith("}"), f"{part} printed no report: {text[-2000:]}"
  train = (tmp_path / "train.json").read_text()
  assert '"speedup_vs_torch_compile"' in train  # every peer ran, gram_jax among them
