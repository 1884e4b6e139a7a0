"""GRAM stage 1: unsupervised pair pre-training (causal-LM loss on the two responses).

The model learns to generate a pair of responses to a question, with the prompt masked.
Default data: the built-in synthetic pairs; give `--config.data.train_files=...` for real data
(official GRAM pre-training rows or {prompt, response_a, response_b} rows).
"""
import functools
import os

import jax
import ml_collections
from absl import logging

from gram_jax import configlib, parallel
from gram_jax.data import encode, loader, preference, records, synthetic
from gram_jax.stages import setup
from gram_jax.training import loop, objectives


def train_files(c: ml_collections.ConfigDict) -> list[str]:
  files = configlib.data_files(c.data.train_files)
  if files:
    return files
  pairs = lambda: synthetic.make_pairs(c.data.builtin_pairs, c.seed, configlib.builtin_tasks(c))
  return [setup.builtin_jsonl(os.path.join(c.workdir, "data", "pretrain_pairs.jsonl"),
                              lambda: synthetic.as_unlabeled(pairs(), seed=c.seed))]


def run(c: ml_collections.ConfigDict) -> None:
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  tokenizer = setup.load_or_build_tokenizer(c)
  pairs, report = records.read_records(
      train_files(c), preference.parse_unlabeled, c.data.on_bad_record,
      shard=(jax.process_index(), jax.process_count()))
  logging.info("pretrain data: %s", report.summary())
  encoder = encode.pretrain_encoder(tokenizer, c.data.cutoff_len,
                                    c.tokenizer.chat_template or None)
  dataset = encode.TokenizedSet.build([encoder(pair) for pair in pairs])
  logging.info("encoded %d examples (%d trimmed to %d tokens)", len(dataset), dataset.trimmed,
               c.data.cutoff_len)
  batches = loader.BatchIterator(dataset, configlib.rows_per_process(c), c.data.seq_len,
                                 c.train.micro_batches,
                                 seed=c.seed, pack=c.data.pack, pad_id=tokenizer.pad_token_id)
  model_config = setup.make_model_config(c, tokenizer)
  objective = functools.partial(objectives.causal_lm_loss, chunk_len=c.train.loss_chunk_len)
  loop.fit(c, mesh, model_config, tokenizer, batches, objective, c.workdir,
           init_params=lambda: setup.initial_params(c, model_config, mesh))
