"""One life of a crash trial (run by test_crash_trials.py, which SIGKILLs it at a random point).

`python -m tests.helpers.crash_worker WORKDIR [lora]`: in WORKDIR (local or gs://) it resumes the real training loop (`loop.fit`: a jitted step and
an async Orbax save every step, keep 2) and then a journaled generation of large JSONL rows
(`run_in_chunks`), checking that everything it resumes from is valid. Prints phase markers
and, at the end, a checksum of the final parameters and of the final JSONL file. With `lora`
the run trains rank-4 adapters on every projection over a frozen base (checkpoints hold the
adapters; the final parameters are the merged model).
"""
import hashlib
import json
import os
import sys

import jax
import numpy as np

from gram_jax import parallel, storage
from gram_jax.checkpoint import RunCheckpointer
from gram_jax.data import loader
from gram_jax.journal import Journal, jsonl_text, run_in_chunks
from gram_jax.stages import common
from gram_jax.text import tokenizer as tok
from gram_jax.training import loop, objectives
from tests.helpers import train_fixtures

STEPS, ITEMS, CHUNK = 12, 48, 4


def expected_row(i: int) -> dict:
  """Row i of the generated file: up to 192 KB, so a kill can tear it mid-write."""
  size = np.random.default_rng(i).integers(1, 192 * 1024)
  return {"index": i, "text": f"{i:06d}" * (int(size) // 6), "end": i}


def generate(chunk: list[int], first: int) -> list[dict]:
  assert chunk == list(range(first, first + len(chunk)))
  return [expected_row(i) for i in chunk]


def trial_run(workdir: str = "", lora: bool = False):
  """The run every life of a trial resumes (the test builds the same one to check states)."""
  c = train_fixtures.train_config(num_steps=STEPS)
  c.model.lora.rank = 4 if lora else 0
  c.checkpoint.update(every_steps=1, keep=2, async_save=True)
  c.model.path, c.workdir = "", workdir
  mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  batches = loader.BatchIterator(train_fixtures.random_dataset(), rows=4, seq_len=32, seed=1)
  return c, mesh, train_fixtures.small_model_config(), batches


def main(workdir: str, variant: str = "") -> None:
  c, mesh, model_config, batches = trial_run(workdir, lora=variant == "lora")
  tokenizer = tok.train_bpe_tokenizer(["a judge reads two responses"] * 8, vocab_size=96)
  latest = RunCheckpointer.reader(os.path.join(workdir, "checkpoints")).latest_step()
  log = Journal(os.path.join(workdir, "generated.jsonl.journal"), {"items": ITEMS})
  final = os.path.join(workdir, "generated.jsonl")
  resumed_rows = log.read()
  assert resumed_rows == [expected_row(i) for i in range(len(resumed_rows))], "bad journal"
  print(f"resume step={latest} rows={len(resumed_rows)}", flush=True)

  print("train", flush=True)  # fit restores `latest` and fails loudly if it cannot
  params = loop.fit(common.training_settings(c, workdir, batches), mesh, model_config, tokenizer,
                    batches, objectives.causal_lm_loss,
                    init_params=lambda: common.initial_params(c, model_config, mesh))
  weights = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in
                                    jax.tree.leaves(jax.device_get(params)))).hexdigest()
  print("generate", flush=True)
  if not storage.exists(final):
    rows = run_in_chunks(list(range(ITEMS)), generate, log, CHUNK)
    assert rows == [expected_row(i) for i in range(ITEMS)], "journal rows differ"
    storage.write_atomic(final, jsonl_text(rows))
    log.remove()
  data = storage.read_bytes(final)
  assert data == jsonl_text([expected_row(i) for i in range(ITEMS)]).encode(), "bad file"
  print("done " + json.dumps({"weights": weights,
                              "generated": hashlib.sha256(data).hexdigest()}), flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])
