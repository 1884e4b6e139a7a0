"""One run per workdir. Two runs on one workdir interleave their metrics, delete each other's
in-flight checkpoints and misdiagnose what follows; the second is refused at start-up, naming
the holder. Locally an exclusive `flock` on `<workdir>/.gram_jax.lock` (released by the
kernel when the holder dies, so it never goes stale); on object storage, which has no locks,
a lease object there that its holder renews, and that expires when nobody renews it."""
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Iterator

from etils import epath

from gram_jax import storage
from gram_jax.errors import GramError

LOCK_FILE = ".gram_jax.lock"
LEASE_SECONDS = 120.0  # a lease nobody renewed for this long is free
RENEW_SECONDS = 30.0
SETTLE_SECONDS = 2.0  # two starters that both found no lease: the last writer holds it


def holder() -> dict:
  """Who holds a lock: what a refused run prints."""
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "command": " ".join(sys.argv)[:300]}


def _refusal(workdir: str, owner: dict | None, expiry: str = "") -> GramError:
  who = (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}: "
         f"{owner.get('command')}" if owner else "holder unknown")
  return GramError(f"{workdir}: in use by another run ({who}){expiry}; wait for it to finish "
                   "or stop it, or use another config.workdir")


def _alive(owner: dict) -> bool:
  """Whether a lease's holder may still run: its lease is unexpired, and it is not a process
  of this machine that has exited (a killed run's rerun need not wait for the expiry)."""
  if owner.get("expires", 0) <= time.time():
    return False
  if owner.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(owner.get("pid", 0)), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError, OverflowError):
    return True
  return True


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds `workdir` for the duration; refuses in one line when another run holds it."""
  if storage.is_remote(workdir):
    with _lease(workdir):
      yield
    return
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
      except ValueError:
        owner = None
      raise _refusal(workdir, owner) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder()).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the flock


@contextlib.contextmanager
def _lease(workdir: str) -> Iterator[None]:
  path = epath.Path(workdir) / LOCK_FILE
  mine = {**holder(), "token": os.urandom(8).hex()}

  def read() -> dict | None:
    try:
      return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
      return None

  def write() -> None:
    path.write_text(json.dumps({**mine, "expires": time.time() + LEASE_SECONDS}))

  current = read()
  if current and _alive(current):
    left = current["expires"] - time.time()
    raise _refusal(workdir, current, f"; its lease on {workdir} expires in {left:.0f} s "
                                     "unless renewed")
  storage.makedirs(workdir)
  write()
  time.sleep(SETTLE_SECONDS)
  current = read()
  if not current or current.get("token") != mine["token"]:
    raise _refusal(workdir, current)
  stop = threading.Event()

  def renew() -> None:
    while not stop.wait(RENEW_SECONDS):
      with contextlib.suppress(Exception):  # a missed renewal: the next one, or expiry
        write()

  renewer = threading.Thread(target=renew, daemon=True)
  renewer.start()
  try:
    yield
  finally:
    stop.set()
    renewer.join(5)
    with contextlib.suppress(Exception):
      if (read() or {}).get("token") == mine["token"]:
        path.unlink()
