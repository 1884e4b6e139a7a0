"""A damaged latest checkpoint is not a dead end: a step whose arrays were deleted or
truncated is named in one line with the error's first line and the step to fall back to,
`checkpoint.resume_step` resumes from it (the later steps set aside), and a stray step
folder with no checkpoint in it is not taken for one."""
import os

import pytest

from tests.helpers import cli
from tests.reliability.test_env_errors import PRETRAIN, TINY

RUN = ("--config.train.num_steps=4", "--config.checkpoint.every_steps=2",
       "--config.checkpoint.keep=3", *TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("damaged") / "run")
  first = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *RUN)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2", "4"]
  return workdir


def _damage(step_dir: str, how: str) -> None:
  for root, _, names in os.walk(os.path.join(step_dir, "params")):
    for name in names:
      path = os.path.join(root, name)
      if os.sep + "d" + os.sep in path + os.sep or root.endswith(os.sep + "d"):
        if how == "delete":
          os.remove(path)
        else:
          os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_a_damaged_latest_step_names_itself_and_the_step_to_fall_back_to(trained, tmp_path,
                                                                          how):
  workdir = str(tmp_path / "run")
  os.system(f"cp -r {trained} {workdir}")
  _damage(os.path.join(workdir, "checkpoints", "4"), how)
  result = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *RUN)
  line = cli.error_line(result)
  assert line.startswith(f"error: {workdir}/checkpoints/4: cannot restore this checkpoint (")
  assert line.endswith("); the previous complete step is 2: rerun with "
                       "--config.checkpoint.resume_step=2 to resume from it (the steps after "
                       "it are set aside), or use a new config.workdir to start afresh"), line
  assert "Traceback" not in result.stderr

  again = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *RUN,
                       "--config.checkpoint.resume_step=2")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed at step 2 of 4" in again.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints_set_aside", "4"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2", "4"]  # 4 again


def test_a_stray_step_folder_is_not_a_checkpoint(trained, tmp_path):
  workdir = str(tmp_path / "run")
  os.system(f"cp -r {trained} {workdir}")
  os.makedirs(os.path.join(workdir, "checkpoints", "99"))
  result = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed at step 4 of 4" in result.stderr
  assert "steps [99] are incomplete" in result.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints_set_aside", "99"))


def test_falling_back_to_a_step_that_is_not_there_is_refused(trained, tmp_path):
  workdir = str(tmp_path / "run")
  os.system(f"cp -r {trained} {workdir}")
  result = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", *RUN,
                        "--config.checkpoint.resume_step=3")
  assert cli.error_line(result) == (
      f"error: config.checkpoint.resume_step=3: {workdir}/checkpoints has no complete step 3 "
      "(complete steps: [1, 2, 4])")
