"""Shared command-line behaviour: quiet library logs, one-line errors."""
import contextlib
import logging as std_logging
import sys
from typing import Iterator

from absl import flags, logging

from gram_jax.errors import GramError


_CHATTY = ("orbax", "fsspec", "gcsfs")  # INFO for every file written or opened
# Said again and again and nothing to act on: gcsfs on every call without credentials; Orbax
# whenever a model is loaded from a run directory (read-only, as it should be).
_REPEATED = ("Could not determine bucket type", "Given directory is read only")


def quiet_library_logs() -> None:
  """Orbax and fsspec log every file they touch at INFO; keep their warnings, drop the rest."""
  logging.get_absl_handler().addFilter(
      lambda record: (record.levelno >= std_logging.WARNING or
                      not any(name in record.pathname for name in _CHATTY)) and
      not any(text in str(record.msg) for text in _REPEATED))


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """A GramError (bad input, config, environment) ends the command with `error: <message>`
  and exit status 1, not a traceback."""
  try:
    yield
  except GramError as e:
    sys.exit(f"error: {e}")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with what loading a config can raise as one `error:` line: an
  override naming no field (`--config.trian.steps=2`), an unknown preset, a bad value."""
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
