"""Loading an HF checkpoint straight from gs:// vs copying it to local disk first.

  python bench/remote_load.py [--hidden=1024 --layers=8 --vocab=32000]

Builds the random Llama checkpoint of bench/load_memory.py (~0.6 GB float32), uploads it to
a GCS emulator on loopback (tests/helpers/gcs.py: no cloud here, so the network is loopback
and the figures show the client side: requests, copies, memory), then in fresh processes:
- gram_jax.load_pretrained("gs://...") — tensors streamed with ranged reads onto their
  shardings, no local copy;
- the usual peer: copy the directory to local disk (fsspec `get`, what `gcloud storage cp -r`
  does), then load it; the time includes the copy;
- gram_jax.load_pretrained(local directory), for reference.
Peak RSS is sampled every 2 ms (bench/load_memory.py). Prints one JSON object.
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.load_memory import build_checkpoint, checkpoint_shape, measure  # noqa: E402
from tests.helpers.gcs import Emulator  # noqa: E402


def upload(local: str, remote: str) -> None:
  from gram_jax import storage
  for name in os.listdir(local):
    with open(os.path.join(local, name), "rb") as f:
      storage.write_atomic(os.path.join(remote, name), f.read())


def main() -> None:
  args = checkpoint_shape()
  emulator = Emulator()
  os.environ.update(emulator.env)
  try:
    with tempfile.TemporaryDirectory() as path:
      size = build_checkpoint(path, args.hidden, args.layers, args.vocab)
      remote = f"{emulator.bucket()}/model"
      upload(path, remote)
      report = {"checkpoint_bytes": size}
      for name, loader, source in (("gram_jax from gs://", "gram_jax", remote),
                                   ("copy to disk, then gram_jax", "copy+gram_jax", remote),
                                   ("gram_jax from local disk", "gram_jax", path)):
        result = measure(loader, source)
        growth = result["peak_rss"] - result["baseline_rss"]
        report[name] = {"peak_rss_growth_bytes": growth, "ratio_to_checkpoint": growth / size,
                        "seconds": round(result["seconds"], 2),
                        "local_disk_bytes": size if loader.startswith("copy") else 0}
  finally:
    emulator.stop()
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
