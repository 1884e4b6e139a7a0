"""Shared command-line behaviour: quiet library logs, one-line errors."""
import contextlib
import logging as std_logging
import sys
from typing import Iterator

from absl import logging

from gram_jax.errors import GramError


def quiet_library_logs() -> None:
  """Orbax logs every file it writes at INFO; keep its warnings, drop the rest."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or "orbax" not in record.pathname)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """A GramError (bad input, config, environment) ends the command with `error: <message>`
  and exit status 1, not a traceback."""
  try:
    yield
  except GramError as e:
    sys.exit(f"error: {e}")
