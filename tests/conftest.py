"""Test-wide setup: 8 fake CPU devices (set before any JAX backend starts) and tiny HF models."""
import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One persistent compile cache for the test processes and the CLI runs they start, which
# compile the same tiny programs many times. No size limit: with one, JAX's eviction reads
# every entry's "-atime" file on each write, and a process the tests SIGKILL between writing an
# entry and its atime leaves an entry that makes every later write fail (the cache stopped
# growing part way through each run). Without eviction a torn entry costs only its own
# recompilation (JAX warns and compiles when an entry does not read).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "gram_jax_tests_compile_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")

import pytest  # noqa: E402

from tests.helpers import gcs as gcs_emulator  # noqa: E402
from tests.helpers import hf_fixtures  # noqa: E402

# Folders by cost, the costliest first, so `pytest -n 2 --dist loadfile` workers end together:
# cli/ starts processes (whole stages), reliability/ kills and restarts them, unit/ is fast.
FOLDERS_BY_COST = ("cli", "reliability", "unit")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="module")
def gcs():
  """A GCS emulator on loopback for this module's tests (skips when its packages are absent)."""
  yield from gcs_emulator.serving_in_environ()


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
  return hf_fixtures.save_tokenizer(str(tmp_path_factory.mktemp("tokenizer")))


def shared_data(*parts: str) -> str:
  """Path under ../shared/data; skips the test when the file is absent."""
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f"benchmark data not present: {path} (the shared data folder; docs/data.md)")
  return path


def pytest_configure(config):
  # xdist would otherwise hand out files by number of tests, most first, which leaves the
  # longest single test (the main job) for the end of the run.
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  def cost_rank(item) -> int:
    folder = item.path.parent.name
    return FOLDERS_BY_COST.index(folder) if folder in FOLDERS_BY_COST else len(FOLDERS_BY_COST)
  items.sort(key=cost_rank)  # stable: within a folder, the collection order
