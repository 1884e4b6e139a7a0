"""One run per workdir: a second run on a workdir in use is refused at start-up in one line
naming the holder (two runs interleaved their metrics and deleted each other's in-flight
checkpoints); the lock goes with its holder, and an object-storage lease expires."""
import json
import os
import time

import pytest

from gram_jax import workdir_lock
from gram_jax.errors import GramError
from tests.helpers import cli
from tests.reliability.test_env_errors import PRETRAIN, TINY


def test_a_second_run_on_a_workdir_in_use_is_refused_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.locked(workdir):  # this test process holds it, as a running stage would
    result = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=2",
                          *TINY)
    line = cli.error_line(result)
    assert line.startswith(f"error: {workdir}: in use by another run (pid {os.getpid()} on ")
    assert line.endswith("; wait for it to finish or stop it, or use another config.workdir")
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))  # nothing written
  again = cli.run_main(PRETRAIN, f"--config.workdir={workdir}", "--config.train.num_steps=2",
                       *TINY)  # released with its holder
  assert again.returncode == 0, again.stderr[-3000:]


def test_the_lock_is_exclusive_within_a_machine(tmp_path):
  with workdir_lock.locked(str(tmp_path)):
    with pytest.raises(GramError, match="in use by another run"):
      with workdir_lock.locked(str(tmp_path)):
        pass
  with workdir_lock.locked(str(tmp_path)):  # free again
    pass


def test_an_object_storage_lease_refuses_while_live_and_expires(tmp_path, monkeypatch):
  """The lease path, on a local folder standing in for a bucket."""
  monkeypatch.setattr(workdir_lock, "SETTLE_SECONDS", 0.0)
  lease = workdir_lock._lease
  with lease(str(tmp_path)):
    held = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())
    assert held["pid"] == os.getpid() and held["expires"] > time.time()
    with pytest.raises(GramError, match=f"in use by another run \\(pid {os.getpid()}"):
      with lease(str(tmp_path)):
        pass
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()  # given back
  stale = {**workdir_lock.holder(), "host": "elsewhere", "token": "other",
           "expires": time.time() - 1}
  (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(stale))
  with lease(str(tmp_path)):  # an expired lease is free
    pass
  dead = {**workdir_lock.holder(), "pid": 2 ** 22 + 1, "token": "other",
          "expires": time.time() + 100}
  (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(dead))
  with lease(str(tmp_path)):  # a live lease of an exited process of this machine is free
    pass
