"""Disk full in the middle of a run (run by test_env_errors.py): trains 4 steps, then caps the
size of any file this process may write (RLIMIT_FSIZE: writes fail as on a full disk) and
trains on; then lifts the cap and resumes. Prints what each part ended with."""
import dataclasses
import json
import os
import resource
import signal
import sys

from gram_jax.checkpoint import RunCheckpointer
from gram_jax.errors import GramError
from gram_jax.stages import common
from gram_jax.text import tokenizer as tok
from gram_jax.training import loop, objectives
from tests.helpers import crash_worker


def train(workdir: str, tokenizer, steps: int) -> str:
  c, mesh, model_config, batches = crash_worker.trial_run(workdir)
  c.train.num_steps, c.checkpoint.every_steps = steps, 2
  try:
    # The same run extended from 4 to 8 steps, which the resume check refuses for a user
    # (another schedule); this worker is about the disk, so it compares no settings.
    settings = dataclasses.replace(common.training_settings(c, workdir, batches),
                                   result_fields={})
    loop.fit(settings, mesh, model_config, tokenizer, batches, objectives.causal_lm_loss,
             init_params=lambda: common.initial_params(c, model_config, mesh))
    return "ok"
  except GramError as e:
    return f"error: {e}"


def latest(workdir: str) -> int | None:
  checkpointer = RunCheckpointer.reader(os.path.join(workdir, "checkpoints"))
  step = checkpointer.latest_step()
  checkpointer.close()
  return step


def main(workdir: str, log: str) -> None:
  tokenizer = tok.train_bpe_tokenizer(["a judge reads two responses"] * 8, vocab_size=96)
  results = {"first": train(workdir, tokenizer, 4)}
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG)
  resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, resource.RLIM_INFINITY))
  results["disk_full"] = train(workdir, tokenizer, 8)
  resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
  results["latest_after_failure"] = latest(workdir)
  results["left_behind"] = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  results["rerun"] = train(workdir, tokenizer, 8)
  results["latest_after_rerun"] = latest(workdir)
  with open(log, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
