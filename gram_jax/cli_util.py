"""Shared command-line behaviour: quiet library logs."""
import logging as std_logging

from absl import logging


def quiet_library_logs() -> None:
  """Orbax logs every file it writes at INFO; keep its warnings, drop the rest."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or "orbax" not in record.pathname)
