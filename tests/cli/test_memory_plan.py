"""The memory plan: the step compiled for the real mesh is measured before any weight loads;
a config that cannot fit the capacity stops in one line naming a change that fits, and that
change is then accepted; `dry_run` prints the plan and trains nothing."""
import os
import re
import shlex

from tests.helpers import cli

PRETRAIN = "configs/pretrain.py"
TINY = ("--config.model.init.hidden_size=32", "--config.model.init.intermediate_size=64",
        "--config.model.init.head_dim=8", "--config.data.seq_len=256",
        "--config.data.cutoff_len=256", "--config.data.builtin_pairs=100",
        "--config.train.per_device_batch_size=8")


def _megabytes(line: str, name: str) -> float:
  value, unit = re.search(rf"{name} ([\d.]+) (KB|MB|GB)", line).groups()
  return float(value) * {"KB": 1 / 1024, "MB": 1, "GB": 1024}[unit]


def dry_run(workdir, *flags, devices=1):
  return cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *TINY, "--config.dry_run=true",
                      *flags, devices=devices)


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
  result = dry_run(tmp_path / "run")
  assert result.returncode == 0, result.stderr[-2000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("dry run: memory plan"))
  parameters = _megabytes(line, "parameters")
  assert 0.05 < parameters < 1  # the tiny model: tens of thousands of float32 parameters
  assert abs(_megabytes(line, "optimizer state") - 2 * parameters) < 0.02 * parameters  # Adam
  assert "no capacity known" in line
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_fsdp_shards_the_planned_state(tmp_path):
  one = dry_run(tmp_path / "one", "--config.mesh.fsdp=1")
  eight = dry_run(tmp_path / "eight", "--config.mesh.fsdp=8", devices=8)
  assert one.returncode == 0 and eight.returncode == 0, eight.stderr[-2000:]
  line = lambda result: next(l for l in result.stdout.splitlines() if l.startswith("dry run"))
  ratio = _megabytes(line(eight), "optimizer state") / _megabytes(line(one), "optimizer state")
  assert ratio < 0.2  # an eighth, plus the small vectors kept whole


def test_a_config_that_cannot_fit_stops_in_one_line_and_its_suggestion_fits(tmp_path):
  plan = dry_run(tmp_path / "plan")
  peak = _megabytes(plan.stdout, "peak")
  capacity = f"--config.train.memory_capacity_gb={0.6 * peak / 1024:.6f}"
  refused = cli.run_main(PRETRAIN, f"--config.workdir={tmp_path / 'run'}", *TINY, capacity)
  line = cli.error_line(refused)
  assert refused.returncode == 1 and "does not fit;" in line and " fits (peak " in line
  assert "starting at step" not in refused.stderr  # stopped before any weight was made
  suggested = shlex.split(line.split("does not fit; ", 1)[1].split(" fits (peak")[0])
  assert suggested and all(flag.startswith("--config.") for flag in suggested)
  accepted = dry_run(tmp_path / "again", capacity, *suggested)
  assert accepted.returncode == 0, accepted.stderr[-2000:]
  assert _megabytes(accepted.stdout, "peak") <= 0.6 * peak + 0.1


def test_bfloat16_moments_halve_the_planned_optimizer_state(tmp_path):
  lean = dry_run(tmp_path / "lean", "--config.train.moment_dtype=bfloat16")
  assert lean.returncode == 0, lean.stderr[-2000:]
  line = next(l for l in lean.stdout.splitlines() if l.startswith("dry run: memory plan"))
  parameters = _megabytes(line, "parameters")  # float32: 4 bytes; two bf16 moments: 4
  assert abs(_megabytes(line, "optimizer state") - parameters) < 0.02 * parameters

