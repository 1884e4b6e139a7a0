"""Stage `pretrain` end to end: runs, learns, resumes exactly after SIGKILL, reshards."""
import glob
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import transformers
from flax import nnx

import gram_jax
from gram_jax import configlib, parallel
from gram_jax.training.metrics import read_jsonl_metrics
from tests.helpers import cli

CONFIG = "configs/pretrain.py"


def _losses(workdir):
  return {step: e["loss"] for step, e in read_jsonl_metrics(
      os.path.join(workdir, "train_metrics.jsonl")).items()}


def test_default_pretrain_learns_and_exports(tmp_path):
  workdir = str(tmp_path / "run")
  result = cli.run_main(CONFIG, f"--config.workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  losses = _losses(workdir)
  steps = sorted(losses)
  first, last = np.mean([losses[s] for s in steps[:5]]), np.mean([losses[s] for s in steps[-5:]])
  assert last < 0.5 * first, (first, last)
  hf_dir = str(tmp_path / "hf")
  convert = subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--src={workdir}",
                            f"--dst={hf_dir}", "--to=hf"], cwd=cli.ROOT, env=cli.main_env(),
                           capture_output=True, text=True, timeout=300)
  assert convert.returncode == 0, convert.stderr[-2000:]
  model, info = transformers.AutoModelForCausalLM.from_pretrained(hf_dir,
                                                                  output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert os.path.isfile(os.path.join(hf_dir, "tokenizer.json"))


RESUME_FLAGS = ("--config.train.num_steps=24", "--config.checkpoint.every_steps=3",
                "--config.train.loss_chunk_len=48",  # the chunked LM loss, resumed exactly
                "--config.data.builtin_pairs=300")


def test_sigkill_then_rerun_resumes_with_identical_losses(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  result = cli.run_main(CONFIG, f"--config.workdir={reference}", *RESUME_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  command = cli.main_command(CONFIG, f"--config.workdir={killed}", *RESUME_FLAGS)
  proc = subprocess.Popen(command, cwd=cli.ROOT, env=cli.main_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # Kill while an async save is in flight (a tmp checkpoint dir exists) after a few steps.
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    saving = glob.glob(os.path.join(killed, "checkpoints", "*tmp*"))
    done = os.path.exists(os.path.join(killed, "train_metrics.jsonl")) and max(
        _losses(killed) or [0]) >= 7
    if saving and done:
      break
    time.sleep(0.005)
  assert proc.poll() is None, "run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(_losses(killed))
  assert killed_at < 24
  checkpoints = os.path.join(killed, "checkpoints")
  saved = max(int(name) for name in os.listdir(checkpoints) if name.isdigit())
  result = cli.run_main(CONFIG, f"--config.workdir={killed}", *RESUME_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  # The rerun says where it resumed before any progress, and its log (no TTY) holds plain
  # progress lines, not carriage-return redraws.
  lines = result.stderr.splitlines()
  said = [i for i, line in enumerate(lines) if f"resumed at step {saved} of 24 from the "
          f"checkpoint in {checkpoints}; data position: epoch " in line]
  progress = [i for i, line in enumerate(lines) if line.startswith(f"train {killed}: step ")]
  assert said and progress and said[0] < progress[0], result.stderr[-3000:]
  assert "\r" not in result.stderr and lines[progress[-1]].startswith(f"train {killed}: step 24/24")
  expected, resumed = _losses(reference), _losses(killed)
  assert sorted(resumed) == sorted(expected) == list(range(1, 25))
  np.testing.assert_allclose([resumed[s] for s in range(1, 25)],
                             [expected[s] for s in range(1, 25)], rtol=1e-6)


def test_checkpoint_from_eight_devices_restores_on_one_and_four(tmp_path):
  workdir = str(tmp_path / "run")
  result = cli.run_main(CONFIG, f"--config.workdir={workdir}", "--config.train.num_steps=3",
                        "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                        "--config.data.builtin_pairs=100", devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  # The first line says what runs where.
  assert f"run: stage pretrain | config {cli.ROOT}/{CONFIG} | model tiny qwen3 from scratch " \
         "(2 layers, width 128, built-in tokenizer) | 8 cpu device(s), 1 process(es), mesh " \
         "data=2 fsdp=2 tensor=2 | compute float32, attention auto | prompt template GRAM " \
         f"pre-training, chat template the tokenizer's own | workdir {workdir}" \
      in result.stderr
  meshes = {
      "8 devices": parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}),
      "1 device": None,
      "4 devices": parallel.make_mesh({"data": 1, "fsdp": 2, "tensor": 2},
                                      devices=jax.devices()[:4]),
  }
  params = {name: _params(gram_jax.load_pretrained(workdir, mesh=mesh))
            for name, mesh in meshes.items()}
  assert len(params["1 device"]["embed"].sharding.device_set) == 1
  assert len(params["4 devices"]["embed"].sharding.device_set) == 4
  reference = jax.device_get(params["8 devices"])
  for name in ("1 device", "4 devices"):
    for x, y in zip(jax.tree.leaves(reference), jax.tree.leaves(jax.device_get(params[name]))):
      np.testing.assert_array_equal(x, y)


def _params(model):
  return nnx.to_pure_dict(nnx.state(model))


def test_unknown_config_key_is_rejected_before_running(tmp_path):
  """One line naming the override and the nearest field, before anything runs."""
  result = cli.run_main(CONFIG, f"--config.workdir={tmp_path}", "--config.train.learnin_rate=1")
  line = cli.error_line(result)
  assert result.returncode != 0
  assert line.startswith("error: --config.train.learnin_rate: the config has no field "
                         "'learnin_rate'") and "learning_rate" in line, line
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_preset_is_one_line_with_the_nearest_name():
  result = cli.run_main("configs/finetune.py:Qwen3-8B")
  line = cli.error_line(result)
  assert result.returncode != 0
  assert "unknown preset 'Qwen3-8B'; did you mean 'qwen3-8b'?" in line, line
  assert "case-sensitive" in line


@pytest.mark.parametrize("changes,message", [
    ({"mesh.data": 3, "mesh.fsdp": 1}, "mesh: shape .* needs 3 devices but 8"),
    ({"mesh.data": 3}, "mesh: 8 devices per slice are not divisible by 3"),
    ({"train.global_batch_size": 10, "mesh.data": 4, "mesh.fsdp": 2},
     r"global_batch_size \(10\) is not divisible by data-parallel size 8"),
    ({"data.train_files": "/nonexistent/pairs.jsonl"}, "train_files: .* data file not found"),
    ({"data.cutoff_len": 4096}, "cutoff_len .* exceeds"),
    ({"model.path": "/nonexistent/model"}, "model.path: .* directory not found"),
    ({"model.attention": "flash2"}, "model.attention: 'flash2' not in"),
    ({"model.attention_block_kv": 0},
     r"model.attention_block_kv: must be >= 1 \(tokens\), got 0"),
    ({"mesh.tensor": 0}, "config.mesh.tensor: 0 is not a mesh size"),
    ({"dcn_mesh.data": -1}, "config.dcn_mesh.data: -1 is not a mesh size"),
])
def test_config_errors_name_the_field(changes, message):
  c = configlib.base_config("pretrain")
  for key, value in changes.items():
    section, field = key.split(".")
    c[section][field] = value
  with pytest.raises(gram_jax.GramError, match=message):
    configlib.validate(c)


def test_cli_config_error_is_one_line(tmp_path):
  result = cli.run_main(CONFIG, f"--config.workdir={tmp_path}", "--config.mesh.data=3",
                        "--config.mesh.fsdp=1")
  assert result.returncode == 1
  assert "needs 3 devices but 1" in cli.error_line(result)
