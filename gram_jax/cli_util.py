"""Shared command-line behaviour: quiet library logs, one-line errors."""
import contextlib
import logging as std_logging
import sys
from typing import Iterator

from absl import logging

from gram_jax.errors import GramError


_CHATTY = ("orbax", "fsspec", "gcsfs")  # INFO for every file written or opened
_REPEATED = "Could not determine bucket type"  # gcsfs, on every call without credentials


def quiet_library_logs() -> None:
  """Orbax and fsspec log every file they touch at INFO; keep their warnings, drop the rest."""
  logging.get_absl_handler().addFilter(
      lambda record: (record.levelno >= std_logging.WARNING or
                      not any(name in record.pathname for name in _CHATTY)) and
      _REPEATED not in str(record.msg))


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """A GramError (bad input, config, environment) ends the command with `error: <message>`
  and exit status 1, not a traceback."""
  try:
    yield
  except GramError as e:
    sys.exit(f"error: {e}")
