"""bench/replicate_gram.py on a lent GPU machine: the model, the data and the packages the
device image lacks travel in parts of at most one call's size, then one call runs the
protocol inside the lease's time and returns its table.

Here, after the last commit (the packed commit names the code of every result there):
  python bench/replicate_device.py pack      # -> .device/replicate/part0, part1, ...
There, one call per part while the machine stays warm (carry the part's folder), the last
one also running the protocol:
  python3 bench/replicate_device.py receive .device/replicate/part0
  python3 bench/replicate_device.py receive .device/replicate/partN && \\
    python3 bench/replicate_device.py run --time_budget_s=480
Rehearsal on this machine's CPU (the same three steps at the smoke scale):
  python bench/replicate_device.py rehearse

Only the standard library runs before `run` has installed the carried wheels: `receive`
and `run` work on a bare image. Every file is checked against the sha256 that `pack`
recorded; the packed commit names the code in every result (the copy there has no git).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKED = os.path.join(ROOT, ".device", "replicate")  # git-ignored
STORE = os.path.join(os.path.expanduser("~"), ".cache", "gram_jax_device", "replicate")
PART_MIB = 58  # a call carries the checkout (~3 MiB) and one part under its 64 MiB
CHUNK_MIB = 4  # the model's GGUF travels in chunks of this size (parts fill up)
MANIFEST = "manifest.json"
# Packages of the protocol that the device image lacks (trl and datasets for the peer, gguf
# to read the model, ml_collections and tensorboardX for gram_jax), at this machine's
# versions; everything they need beside is in the image.
WHEELS = ("trl", "datasets", "dill", "multiprocess", "gguf", "ml_collections", "tensorboardX")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def sha256_of(path: str) -> str:
  """gram_jax.hf.gguf_build.sha256_of, again: `receive` runs on the bare image, where
  importing gram_jax fails until `run` has installed its missing packages."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def code_version() -> str:
  sys.path.insert(0, ROOT)
  from gram_jax import provenance
  return provenance.current_code_version()


def download_wheels(out: str, python_version: str) -> list[str]:
  """This machine's versions of WHEELS, built for the device's Python, no dependencies."""
  from importlib import metadata
  pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
  subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                  "--only-binary=:all:", "--python-version", python_version,
                  "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS),
                  "-d", out, *pins], check=True)
  return sorted(os.path.join(out, name) for name in os.listdir(out))


def pack(out: str, python_version: str, part_mib: float = PART_MIB,
         chunk_mib: float = CHUNK_MIB) -> list[str]:
  """Writes out/part0, part1, ...: each at most `part_mib`, each with the manifest."""
  sys.path.insert(0, ROOT)
  from gram_jax.hf import smollm2
  from replicate_data import SHARED
  shutil.rmtree(out, ignore_errors=True)
  staging = os.path.join(out, "staging")
  os.makedirs(staging)
  files = download_wheels(os.path.join(staging, "wheels"), python_version)
  data = os.path.join(staging, "shared_data.tar.gz")
  with tarfile.open(data, "w:gz") as tar:
    tar.add(SHARED, arcname="data")
  files.append(data)
  gguf = smollm2.fetch_gguf(smollm2.default_cache())
  chunk = int(chunk_mib * (1 << 20))
  with open(gguf, "rb") as f:
    for index, block in enumerate(iter(lambda: f.read(chunk), b"")):
      path = os.path.join(staging, f"model.gguf.{index:03d}")
      with open(path, "wb") as part:
        part.write(block)
      files.append(path)
  parts: list[list[str]] = [[]]
  size = lambda paths: sum(os.path.getsize(p) for p in paths)
  for path in files:
    if parts[-1] and size(parts[-1] + [path]) > part_mib * (1 << 20):
      parts.append([])
    parts[-1].append(path)
  manifest = {
      "code": code_version(), "python": python_version,
      "gguf": {"name": smollm2.GGUF_NAME, "sha256": sha256_of(gguf),
               "chunks": [os.path.basename(p) for p in files if ".gguf." in p]},
      "files": {os.path.relpath(p, staging): sha256_of(p) for p in files},
      "parts": len(parts)}
  folders = []
  for index, paths in enumerate(parts):
    folder = os.path.join(out, f"part{index}")
    for path in paths:
      target = os.path.join(folder, os.path.relpath(path, staging))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(path, target)
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
    folders.append(folder)
    mib = size([os.path.join(r, n) for r, _, ns in os.walk(folder) for n in ns]) / (1 << 20)
    print(f"{folder}: {mib:.1f} MiB, {len(paths)} file(s)")
  shutil.rmtree(staging)
  return folders


def receive(part: str, store: str) -> None:
  """Copies a carried part into the store (outside the checkout, kept while the machine is
  warm), each file checked against the manifest."""
  with open(os.path.join(part, MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  for root, _, names in os.walk(part):
    for name in names:
      source = os.path.join(root, name)
      relative = os.path.relpath(source, part)
      if relative != MANIFEST and sha256_of(source) != manifest["files"][relative]:
        sys.exit(f"{source}: its sha256 is not the one packed; pack and send it again")
      os.makedirs(os.path.dirname(os.path.join(store, relative)), exist_ok=True)
      shutil.copyfile(source, os.path.join(store, relative))
  missing = [p for p in manifest["files"] if not os.path.exists(os.path.join(store, p))]
  print(f"{store}: {len(manifest['files']) - len(missing)} of {len(manifest['files'])} files"
        + (f"; still to send: {', '.join(missing)}" if missing else "; complete"))


def unpacked(store: str) -> dict[str, str]:
  """The environment of the protocol from a complete store: the model's GGUF where
  gram_jax.hf.smollm2 finds it, the wheels installed, the data unpacked."""
  with open(os.path.join(store, MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  missing = [p for p, digest in manifest["files"].items()
             if not os.path.exists(os.path.join(store, p))]
  if missing:
    sys.exit(f"{store}: not every part was received; missing {', '.join(missing)}")
  cache = os.path.join(store, "cache")
  gguf = os.path.join(cache, "gram_jax", "smollm2-135m-instruct", manifest["gguf"]["name"])
  if not os.path.exists(gguf):
    os.makedirs(os.path.dirname(gguf), exist_ok=True)
    with open(gguf + ".partial", "wb") as out:
      for chunk in manifest["gguf"]["chunks"]:
        with open(os.path.join(store, chunk), "rb") as f:
          shutil.copyfileobj(f, out)
    if sha256_of(gguf + ".partial") != manifest["gguf"]["sha256"]:
      sys.exit(f"{gguf}: the joined chunks are not the packed model")
    os.replace(gguf + ".partial", gguf)
  site = os.path.join(store, "site")
  if not os.path.isdir(site):
    wheels = [os.path.join(store, p) for p in manifest["files"] if p.startswith("wheels")]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--target", site + ".partial", *wheels], check=True)
    os.replace(site + ".partial", site)
  shared = os.path.join(store, "shared")
  if not os.path.isdir(shared):
    with tarfile.open(os.path.join(store, "shared_data.tar.gz")) as tar:
      tar.extractall(shared + ".partial", filter="data")
    os.replace(shared + ".partial", shared)
  return {**os.environ, "XDG_CACHE_HOME": cache,
          "PYTHONPATH": os.pathsep.join([site, ROOT, os.environ.get("PYTHONPATH", "")]),
          "GRAM_JAX_SHARED_DATA": os.path.join(shared, "data"),
          "GRAM_JAX_CODE_VERSION": f"{manifest['code']} (packed)", "PYTHONUNBUFFERED": "1"}


def run(store: str, results: str, time_budget_s: float, scale: str, seeds: str, rows: str
        ) -> int:
  """The protocol inside `time_budget_s` (setting up counted), then its table and files in
  `results`; a second call resumes what the first left unfinished."""
  start = time.monotonic()
  env = unpacked(store)
  os.makedirs(results, exist_ok=True)
  workdir = os.path.join(store, "replicate_gram")
  versions = subprocess.run(
      [sys.executable, "-c", "import jax, torch, transformers, trl, peft; print('jax', "
       "jax.__version__, jax.devices(), 'torch', torch.__version__, 'transformers', "
       "transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"],
      env=env, capture_output=True, text=True)
  with open(os.path.join(results, "versions.txt"), "w", encoding="utf-8") as f:
    f.write(versions.stdout + versions.stderr + f"code: {env['GRAM_JAX_CODE_VERSION']}\n")
  left = time_budget_s - (time.monotonic() - start)
  command = [sys.executable, os.path.join(ROOT, "bench", "replicate_gram.py"),
             f"--scale={scale}", f"--seeds={seeds}", f"--rows={rows}",
             f"--workdir={workdir}", f"--time_budget_s={max(left, 1.0)}"]
  summary = os.path.join(workdir, "summary.json")
  before = os.path.getmtime(summary) if os.path.exists(summary) else None
  with open(os.path.join(results, "replicate.log"), "a", encoding="utf-8") as log:
    code = subprocess.run(command, cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT).returncode
    if not os.path.exists(summary) or os.path.getmtime(summary) == before:
      # It stopped before its table: the table of the steps that finished, all the same.
      log.write(f"the protocol exited with {code}; the finished steps:\n")
      log.flush()
      subprocess.run(command[:-1] + ["--cached_only"], cwd=ROOT, env=env, stdout=log,
                     stderr=subprocess.STDOUT)
  for name in ("summary.json", "curves.png"):
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copyfile(os.path.join(workdir, name), os.path.join(results, name))
  with open(os.path.join(results, "replicate.log"), encoding="utf-8") as f:
    print(f.read()[-6000:])
  return code


def rehearse() -> None:
  """pack, receive and run at the smoke scale on this machine, in a temporary folder."""
  with tempfile.TemporaryDirectory(prefix="replicate_device_") as tmp:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    parts = pack(os.path.join(tmp, "packed"), python, part_mib=24, chunk_mib=20)
    store = os.path.join(tmp, "store")
    for part in parts:
      receive(part, store)
    code = run(store, os.path.join(tmp, "results"), 1800, "smoke", "0",
               "zero_shot,ft,bt,stage1")
    print("results:", sorted(os.listdir(os.path.join(tmp, "results"))))
    if code:
      sys.exit(f"the rehearsal's protocol exited with {code}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  packing = commands.add_parser("pack", help="here: the parts to carry")
  packing.add_argument("--out", default=PACKED)
  packing.add_argument("--python_version", default="3.12", help="the device image's Python")
  receiving = commands.add_parser("receive", help="there: one carried part into the store")
  receiving.add_argument("part")
  receiving.add_argument("--store", default=STORE)
  running = commands.add_parser("run", help="there: the protocol inside the lease")
  running.add_argument("--store", default=STORE)
  running.add_argument("--results", default=os.environ.get("OUT", "/tmp/replicate_results"))
  running.add_argument("--time_budget_s", type=float, default=480)
  running.add_argument("--scale", default="full")
  running.add_argument("--seeds", default="0,1,2")
  running.add_argument("--rows",
                       default="zero_shot,ft,bt,balance,smoothing,length,stage1,gram_r2")
  commands.add_parser("rehearse", help="here: the three steps at the smoke scale on CPU")
  args = parser.parse_args()
  if args.command == "pack":
    pack(args.out, args.python_version)
  elif args.command == "receive":
    receive(args.part, args.store)
  elif args.command == "run":
    sys.exit(run(args.store, args.results, args.time_budget_s, args.scale, args.seeds,
                 args.rows))
  else:
    rehearse()


if __name__ == "__main__":
  main()
