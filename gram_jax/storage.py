"""Where a run's files live: local (or mounted) paths, or gs:// and s3:// object storage.

Object storage goes through etils.epath over fsspec (gcsfs, s3fs): the path layer Orbax and
TFDS use, so checkpoints, run files and data share one set of credentials and endpoints.
What object storage lacks is handled here, once:
- no rename: a whole-file write is one object upload, which readers see whole or not at all;
  a directory that must appear complete (`staged_dir`) is written in place and committed by
  its marker file, written last (locally it is still written aside and renamed);
- no append: journals keep one object per chunk (gram_jax.journal);
- libraries that only write local files (transformers' save_pretrained) write into a local
  folder that is uploaded on exit (`local_mirror`), and read a local copy (`local_copy`).
Listing caches are off: other hosts, and TensorStore within this one, write behind fsspec's
back, and a cached listing once showed a checkpoint step that another process had deleted.
Any other URL (gcs://, az://, gs:/ with one slash...) is refused before any work: it would
otherwise become a local folder named after its scheme on every host.
"""
import atexit
import contextlib
import os
import re
import shutil
import tempfile
import threading
from typing import IO, Iterator

import fsspec
from etils import epath

from gram_jax.errors import GramError

REMOTE_SCHEMES = ("gs", "s3")
DATA_SCHEMES = ("hf://", "tfds://")  # read by datasets / TFDS themselves
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")
_FILESYSTEM_PACKAGE = {"gs": "gcsfs", "s3": "s3fs"}
CHECK_SECONDS = 30  # start-up check; gcsfs alone retries an unreachable host for ~90 s
for _scheme in REMOTE_SCHEMES:
  fsspec.config.conf.setdefault(_scheme, {})["use_listings_cache"] = False


def is_remote(path: str) -> bool:
  return bool(path) and path.startswith(tuple(f"{s}://" for s in REMOTE_SCHEMES))


def check(path: str, what: str, data: bool = False) -> None:
  """Raises a one-line GramError naming `what` when `path` is a URL no layer here can use."""
  match = _URL.match(path or "")
  if not match or (data and path.startswith(DATA_SCHEMES)):
    return
  scheme = match.group(1)
  if scheme in REMOTE_SCHEMES and re.match(rf"^{scheme}://[a-z0-9][^/]*", path):
    return
  known = ", ".join(f"{s}://bucket/..." for s in REMOTE_SCHEMES)
  raise GramError(f"{what}: {path}: not a usable path (local paths and {known} only); "
                  f"refusing rather than writing a local folder named '{scheme}:'")


def check_checkpoints(path: str, what: str) -> None:
  """Orbax (0.12) reads s3://b/x as 's3:/b/x' and refuses it after the first step has run
  (found against an S3 emulator): say so before any work."""
  if path.startswith("s3://"):
    raise GramError(f"{what}: {path}: Orbax checkpoints cannot live on s3:// with this Orbax "
                    "(it reads the path as 's3:/...'); use gs://, or mount the bucket "
                    "(e.g. mountpoint-s3) and give its local path")


def check_reachable(path: str, what: str) -> None:
  """Start-up check of an object-storage path: its filesystem package is installed, the
  credentials work and the bucket exists — one clear error before any work."""
  if not is_remote(path):
    return
  scheme = path.split("://", 1)[0]
  package = _FILESYSTEM_PACKAGE[scheme]
  try:
    __import__(package)
  except ImportError:
    raise GramError(f"{what}: {path}: {scheme}:// needs the '{package}' package "
                    f"(pip install {package})") from None
  bucket = f"{scheme}://{path.split('://', 1)[1].split('/', 1)[0]}"
  answer: list = []

  def ask() -> None:
    try:
      answer.append(epath.Path(bucket).exists())
    except Exception as e:  # gcsfs / s3fs / google-auth raise many types
      answer.append(e)
  asking = threading.Thread(target=ask, daemon=True)  # a daemon: exiting never waits on it
  asking.start()
  asking.join(CHECK_SECONDS)
  if not answer:
    raise GramError(f"{what}: {path}: no answer from bucket {bucket} in {CHECK_SECONDS} s; "
                    "check the network and the endpoint")
  found = answer[0]
  if isinstance(found, Exception):
    reason = str(found).strip().splitlines()[0] if str(found).strip() else type(found).__name__
    raise GramError(f"{what}: {path}: cannot reach bucket {bucket} ({reason}); check the "
                    "credentials (gcloud auth application-default login, AWS_* variables) "
                    "and the network")
  if not found:
    raise GramError(f"{what}: {path}: bucket {bucket} does not exist or these credentials "
                    "cannot see it")


def absolute(p: str) -> str:
  """A local path made absolute; a URL as it is (os.path.abspath would make it local)."""
  return p if is_remote(p) else os.path.abspath(p)


def exists(p: str) -> bool:
  return epath.Path(p).exists()


def isdir(p: str) -> bool:
  return epath.Path(p).is_dir()


def isfile(p: str) -> bool:
  return epath.Path(p).is_file()


def listdir(p: str) -> list[str]:
  """Names in a directory (for object storage: under the prefix), sorted."""
  return sorted(child.name for child in epath.Path(p).iterdir())


def contained(directory: str, name: str) -> str:
  """`directory/name`, refused in one line when it resolves outside `directory`: a `../` or
  absolute name, or a symlink to elsewhere. What a model directory names is read, exported
  and uploaded with it, so it must not reach what lies beside it (a secret behind a
  symlinked chat_template.jinja). A Hugging Face hub snapshot's files link into its
  repository's blobs/, which counts as inside."""
  path = os.path.join(directory, name)
  parts = name.replace("\\", "/").split("/")
  if os.path.isabs(name) or ".." in parts:
    raise GramError(f"{directory}: {name!r} lies outside the directory; refusing to read it")
  if is_remote(directory):
    return path
  root = os.path.realpath(directory)
  if os.path.basename(os.path.dirname(root)) == "snapshots":  # hub cache: repo/snapshots/rev
    root = os.path.dirname(os.path.dirname(root))
  if os.path.lexists(path) and not os.path.realpath(path).startswith(root + os.sep):
    raise GramError(f"{path}: resolves outside {directory} (to {os.path.realpath(path)}); "
                    "refusing to read it")
  return path


def check_contained(directory: str) -> None:
  """Every entry directly in a local `directory` resolves inside it (see `contained`)."""
  if not is_remote(directory) and os.path.isdir(directory):
    for name in sorted(os.listdir(directory)):
      contained(directory, name)


def walk_files(p: str) -> list[str]:
  """Every file under a directory, sorted by path."""
  found = []
  for root, _, names in epath.Path(p).walk():
    found += [os.path.join(os.fspath(root), name) for name in names]
  return sorted(found)


def version(p: str) -> tuple[int, str]:
  """A file's size and a token that changes when it is rewritten: the modification time
  locally, the object's generation (GCS) or ETag (S3) on object storage."""
  if not is_remote(p):
    stat = os.stat(p)
    return stat.st_size, str(stat.st_mtime_ns)
  info = fsspec.filesystem(p.split("://", 1)[0]).info(p)
  token = next((info[k] for k in ("generation", "ETag", "etag", "mtime") if info.get(k)), "")
  return int(info["size"]), str(token)


def makedirs(p: str) -> None:
  epath.Path(p).mkdir(parents=True, exist_ok=True)


def open_file(p: str, mode: str = "rb") -> IO:
  return epath.Path(p).open(mode)


def read_into(p: str, offset: int, out: memoryview) -> int:
  """Reads up to len(out) bytes at `offset` into `out`; returns how many. On object storage:
  one ranged request, with no readahead cache holding a second copy."""
  if not is_remote(p):
    with open(p, "rb") as f:
      f.seek(offset)
      return f.readinto(out)
  filesystem = fsspec.filesystem(p.split("://", 1)[0])
  data = filesystem.cat_file(p, start=offset, end=offset + len(out))
  out[:len(data)] = data
  return len(data)


def read_text(p: str) -> str:
  return epath.Path(p).read_text(encoding="utf-8")


def read_bytes(p: str) -> bytes:
  return epath.Path(p).read_bytes()


def write_atomic(p: str, data: str | bytes) -> str:
  """Readers see the old content or the new, whole. Local: a temporary file, fsync, rename.
  Object storage: one upload, which only becomes visible when complete."""
  try:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if is_remote(p):
      epath.Path(p).write_bytes(raw)
      return p
    os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
    tmp = f"{p}.tmp{os.getpid()}"
    try:
      with open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, p)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  except (OSError, UnicodeError) as e:
    raise GramError(f"{p}: cannot write ({getattr(e, 'strerror', None) or e})") from None
  return p


def remove(p: str) -> None:
  """Deletes a file; a missing one is fine."""
  target = epath.Path(p)
  if target.exists():
    target.unlink()


def rmtree(p: str) -> None:
  """Deletes a directory tree; a missing one is fine."""
  if is_remote(p):
    target = epath.Path(p)
    if target.exists():
      target.rmtree()
  else:
    shutil.rmtree(p, ignore_errors=True)


def move(src: str, dst: str) -> None:
  """Local: an atomic rename. Object storage: copy then delete (not atomic; for files and
  folders set aside, never for commits)."""
  if is_remote(src) and isdir(src):
    fsspec.filesystem(src.split("://", 1)[0]).mv(src, dst, recursive=True)
  elif is_remote(src):
    epath.Path(dst).write_bytes(epath.Path(src).read_bytes())
    epath.Path(src).unlink()
  else:
    os.replace(src, dst)


def staging_path(p: str) -> str:
  """Where `staged_dir(p, ...)` writes."""
  return p if is_remote(p) else p.rstrip("/") + ".tmp"


@contextlib.contextmanager
def staged_dir(p: str, marker: str) -> Iterator[str]:
  """A directory that is complete or not there. Yields where to write; the caller writes
  `marker` last. Local: written as `p.tmp` and renamed over `p` at the end. Object storage
  (no rename): the old marker goes first, then the old files, and the new files are written
  in place; a directory without its marker is incomplete and never loaded. A failed write
  (a full disk) removes what it wrote and, for an OSError, says so in one line."""
  target = p if is_remote(p) else staging_path(p)
  if is_remote(p):
    remove(os.path.join(p, marker))
  rmtree(target)
  makedirs(target)
  try:
    yield target
  except BaseException as e:  # a full disk must not stay full with a half-written copy
    rmtree(target)
    if isinstance(e, OSError):
      raise GramError(f"{p}: writing failed ({e.strerror or e}); the partial copy in "
                      f"{target} was removed") from None
    raise
  if not is_remote(p):
    shutil.rmtree(p, ignore_errors=True)
    os.replace(target, p)


@contextlib.contextmanager
def local_mirror(p: str, last: tuple[str, ...] = ()) -> Iterator[str]:
  """A local folder for writers that only know local files; on object storage its files are
  uploaded to `p` on exit, the names in `last` after all others (commit markers)."""
  if not is_remote(p):
    os.makedirs(p, exist_ok=True)
    yield p
    return
  with tempfile.TemporaryDirectory(prefix="gram_jax_upload_") as local:
    yield local
    names = sorted(os.listdir(local), key=lambda name: (name in last, name))
    for name in names:
      _upload(os.path.join(local, name), os.path.join(p, name))


def _upload(local: str, remote: str) -> None:
  if os.path.isdir(local):
    for name in sorted(os.listdir(local)):
      _upload(os.path.join(local, name), os.path.join(remote, name))
    return
  with open(local, "rb") as f:
    epath.Path(remote).write_bytes(f.read())


_COPIES: list[tempfile.TemporaryDirectory] = []
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")


def local_copy(p: str) -> str:
  """`p` itself when local; for object storage, a local copy of the directory's files but
  its weights (for readers that only know local files: tokenizers). Removed at exit."""
  if not is_remote(p):
    return p
  if not _COPIES:
    atexit.register(lambda: [copy.cleanup() for copy in _COPIES])
  _COPIES.append(tempfile.TemporaryDirectory(prefix="gram_jax_copy_"))
  local = _COPIES[-1].name
  for child in epath.Path(p).iterdir():
    if child.is_file() and not child.name.endswith(WEIGHT_SUFFIXES):
      (epath.Path(local) / child.name).write_bytes(child.read_bytes())
  return local
