"""Shared command-line behaviour: quiet library logs, one-line errors."""
import contextlib
import logging as std_logging
import os
import sys
from typing import Callable, Iterator

from absl import flags, logging

from gram_jax.errors import GramError


_CHATTY = ("orbax", "fsspec", "gcsfs")  # INFO for every file written or opened
# Said again and again and nothing to act on: gcsfs on every call without credentials; Orbax
# whenever a model is loaded from a run directory (read-only, as it should be).
_REPEATED = ("Could not determine bucket type", "Given directory is read only")




def _library_record(record: std_logging.LogRecord) -> bool:
  """A failed checkpoint write (disk full) is raised into RunCheckpointer, which says it in
  one line; Orbax also logs a traceback from each of its writer threads (~200 lines above
  the one that says what to do). Those stay visible at --verbosity=1."""
  if record.levelno < std_logging.WARNING and any(name in record.pathname for name in _CHATTY):
    return False
  if any(text in str(record.msg) for text in _REPEATED):
    return False
  if "orbax" in record.pathname and record.exc_info and not logging.level_debug():
    return False
  return True


def _closed_loop_reports(default: Callable) -> Callable:
  """After a failed write, TensorStore's writes still in flight report into Orbax's closed
  event loop as unraisable exceptions, one traceback each: at debug level instead."""
  def hook(unraisable) -> None:
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      logging.debug("a write still in flight reported into a closed event loop: %s", error)
      return
    default(unraisable)
  return hook


def quiet_library_logs() -> None:
  """Orbax and fsspec log every file they touch at INFO: keep their warnings, drop the rest;
  a failed checkpoint write is one line (its library tracebacks at debug level)."""
  logging.get_absl_handler().addFilter(_library_record)
  sys.unraisablehook = _closed_loop_reports(sys.unraisablehook)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """A GramError (bad input, config, environment) ends the command with `error: <message>`
  and exit status 1, not a traceback."""
  try:
    yield
  except GramError as e:
    sys.exit(f"error: {e}")


def check_config_file(argv: list[str]) -> None:
  """`--config=PATH[:preset]` names a file: a directory or a missing file is one line
  (ml_collections reported it twice, as two tracebacks)."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--config" and i + 1 < len(argv):
      arg = f"--config={argv[i + 1]}"
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1].split(":", 1)[0]
      if os.path.isdir(path):
        sys.exit(f"error: --config={path}: a directory; name a stage config file, e.g. "
                 "configs/finetune.py")
      if not os.path.isfile(path):
        sys.exit(f"error: --config={path}: no such file; the stage configs are in configs/")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with what loading a config can raise as one `error:` line: an
  override naming no field (`--config.trian.steps=2`), an unknown preset, a bad value."""
  check_config_file(argv)
  try:
    return flags.FLAGS(argv)
  except GramError as e:
    sys.exit(f"error: {e}")
  except (KeyError, AttributeError) as e:  # ml_collections: an override names no field
    inner = e
    while inner.args and isinstance(inner.args[0], BaseException):  # AttributeError(KeyError)
      inner = inner.args[0]
    missing, _, hint = str(inner.args[0] if inner.args else inner).partition("\n")
    missing = missing.strip("'\"")
    given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and
             missing in a.split("=")[0].split(".")]
    if not given:
      raise
    hint = f"; {hint[0].lower()}{hint[1:]}" if hint else ""
    sys.exit(f"error: {given[0]}: the config has no field {missing!r}{hint}")
  except flags.Error as e:
    sys.exit(f"error: {e}")
