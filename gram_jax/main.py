"""Entry point: `python -m gram_jax.main --config=configs/<stage>.py[:preset] --config.a.b=v`.

Parses the config, starts multi-host JAX where needed, validates, and runs the stage. SIGTERM
makes the stage save its progress and exit 0 (gram_jax.preemption); rerunning resumes.
"""
import contextlib
import importlib
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from gram_jax import cli_util, configlib, parallel, preemption, workdir_lock
from gram_jax.training import memory_plan

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file[:preset].",
                                          lock_config=True)


def use_compilation_cache(path: str) -> None:
  """JAX's persistent compilation cache at `path` (config.compilation_cache), unless the
  environment names one or the config turns it off. Every program is kept, not only those
  over JAX's default 1 s: a server warms dozens of shapes that compile in about a second each,
  and a restart should compile none of them."""
  if path and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def main(argv: list[str]) -> None:
  cli_util.quiet_library_logs()
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  config = _CONFIG.value
  if config is None:
    sys.exit("error: --config=configs/<stage>.py is required")
  with cli_util.one_line_errors():
    try:
      use_compilation_cache(config.compilation_cache)
      d = config.distributed
      parallel.initialize_distributed(d.mode, d.coordinator_address, d.num_processes,
                                      d.process_id)
      preemption.install()
      configlib.validate(config)
      stage = importlib.import_module(f"gram_jax.stages.{config.stage}")
      logging.info("%s", configlib.describe(config, config_flags.get_config_filename(
          flags.FLAGS["config"])))
      # One run per workdir (its first process holds it); a server writes nothing there.
      holds = config.stage != "serve" and jax.process_index() == 0
      with workdir_lock.locked(config.workdir) if holds else contextlib.nullcontext():
        stage.run(config)
    except memory_plan.DryRun as e:
      print(f"dry run: {e}")
    except preemption.Preempted as e:
      logging.warning("preempted: saved %s; rerun the same command to resume", e)
      print(f"preempted: saved {e}; rerun the same command to resume", file=sys.stderr)

if __name__ == "__main__":
  app.run(main, flags_parser=cli_util.parse_flags)
