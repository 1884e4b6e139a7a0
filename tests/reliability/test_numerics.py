"""Non-finite losses: the update is not applied, the batch's records are logged, and after
`max_bad_steps` bad steps in a row training stops with a clear error, the last good
checkpoint intact."""
import dataclasses
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gram_jax import GramError
from gram_jax.checkpoint import RunCheckpointer
from gram_jax.data import encode, loader
from gram_jax.models.decoder import abstract_model
from gram_jax.stages import common
from gram_jax.text import tokenizer as tok
from gram_jax.training import loop, objectives
from tests.helpers import crash_worker, train_fixtures

POISON = 7  # a token id whose presence makes the loss NaN (a stand-in for a bad batch)


def nan_if_poisoned(model, batch):
  loss, count = objectives.causal_lm_loss(model, batch)
  return jnp.where(jnp.any(batch["input_ids"] == POISON), jnp.nan, loss), count


def _data(poisoned: bool) -> encode.TokenizedSet:
  clean = train_fixtures.random_dataset()
  examples = []
  for i in range(len(clean)):
    ids, prompt_len = clean.example(i)
    ids = np.where(ids == POISON, POISON + 1, ids)
    if poisoned:
      ids = np.concatenate([ids[:1], [POISON], ids[2:]]).astype(np.int32)
    examples.append(encode.Example(ids, prompt_len, where=f"train.jsonl:{i + 1}"))
  return encode.TokenizedSet.build(examples)


def _fit(workdir: str, steps: int, poisoned: bool, max_bad_steps: int = 3):
  c, mesh, model_config, _ = crash_worker.trial_run(workdir)
  c.train.num_steps, c.train.max_bad_steps, c.checkpoint.every_steps = steps, max_bad_steps, 1
  batches = loader.BatchIterator(_data(poisoned), rows=4, seq_len=32, seed=1)
  tokenizer = tok.train_bpe_tokenizer(["a judge reads two responses"] * 8, vocab_size=96)
  # The run extended with poisoned data, which the resume check refuses for a user (other
  # steps, other data); this test is about the non-finite guard, so it compares no settings.
  settings = dataclasses.replace(common.training_settings(c, workdir, batches),
                                 result_fields={})
  return loop.fit(settings, mesh, model_config, tokenizer, batches, nan_if_poisoned,
                  init_params=lambda: common.initial_params(c, model_config, mesh))


def test_consecutive_non_finite_steps_stop_with_the_last_good_checkpoint(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  good = _fit(workdir, 2, poisoned=False)
  with caplog.at_level(logging.WARNING), pytest.raises(GramError) as error:
    _fit(workdir, 10, poisoned=True)
  message = str(error.value)
  assert "training stopped at step 5: 3 consecutive steps with a non-finite loss" in message
  assert "last good checkpoint: step 2" in message and "train.jsonl:" in message
  warnings = [r.getMessage() for r in caplog.records if "update not applied" in r.getMessage()]
  assert len(warnings) == 3 and all("batch: train.jsonl:" in w for w in warnings)
  checkpointer = RunCheckpointer.reader(os.path.join(workdir, "checkpoints"))
  assert checkpointer.latest_step() == 2  # nothing was saved during the bad streak
  c, mesh, model_config, _ = crash_worker.trial_run(workdir)
  trainer, _, _ = train_fixtures.make_trainer(mesh, model_config, 10, c)
  _, abstract = abstract_model(model_config)
  restored, _ = checkpointer.restore(2, trainer.abstract_state(nnx.to_pure_dict(abstract)))
  checkpointer.close()
  for a, b in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(good)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the good step-2 state
