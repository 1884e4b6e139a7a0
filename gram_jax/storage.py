"""Where a run's files may live: local (or mounted) paths.

A URL such as gs://bucket/run is refused before any work: plain open() and os.makedirs would
otherwise create a local folder named 'gs:' on every host and lose the run with the VM.
Object storage through etils.epath is issue 17's work; hf:// and tfds:// data sources are
read by their own libraries and stay allowed where data is read.
"""
import re

from gram_jax.errors import GramError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
DATA_SCHEMES = ("hf://", "tfds://")


def check_local(path: str, what: str, data: bool = False) -> None:
  """Raises a one-line GramError naming `what` when `path` is a URL this build cannot use."""
  if not path or not _URL.match(path) or (data and path.startswith(DATA_SCHEMES)):
    return
  scheme = path.split(":", 1)[0]
  raise GramError(f"{what}: {path}: {scheme}:// paths are not supported yet (local or "
                  f"mounted paths only, e.g. gcsfuse); refusing rather than writing a local "
                  f"folder named '{scheme}:'")
