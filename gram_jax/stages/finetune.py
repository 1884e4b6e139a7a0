"""GRAM stage 2: label-smoothed preference fine-tuning on the verdict token.

Each labeled pair becomes the judging prompt (both orders when data.both_orders); the loss is
cross-entropy over the two label-token logits at the verdict position with label smoothing
(official `gram_loss`). Held-out accuracy (official both-order readout) is logged as it trains.
"""
import functools
import os
import random

import jax
import numpy as np
import ml_collections
from absl import logging
from flax import nnx

from gram_jax import stages
from gram_jax import configlib, loop, model_setup, objectives, parallel, synthetic
from gram_jax.data import encode, loader, preference, records
from gram_jax.judge import JudgeEncoder
from gram_jax.reward import RewardModel

BUILTIN_EVAL_PAIRS = 200


def builtin_files(c: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
  """Labeled synthetic pairs for training and a held-out file that shares no pair with it."""
  data = os.path.join(c.workdir, "data")
  splits = {}
  def split(name: str) -> list[dict]:
    if not splits:
      splits.update(synthetic.disjoint_splits(
          {"heldout": BUILTIN_EVAL_PAIRS, "train": c.data.builtin_pairs}, c.seed,
          configlib.builtin_tasks(c)))
    return splits[name]
  train = stages.builtin_jsonl(os.path.join(data, "train_pairs.jsonl"), lambda: split("train"))
  held_out = stages.builtin_jsonl(os.path.join(data, "eval_pairs.jsonl"),
                                  lambda: split("heldout"))
  return [train], [held_out]


def verdict_examples(pairs: list[preference.PreferencePair], encoder: JudgeEncoder,
                     both_orders: bool, seed: int) -> encode.TokenizedSet:
  """Judging prompts labeled 0 when the better response is A, 1 when it is B."""
  rng = random.Random(seed)
  triples, labels, wheres = [], [], []
  for pair in pairs:
    chosen_first = both_orders or rng.random() < 0.5
    if chosen_first:
      triples.append((pair.prompt, pair.chosen, pair.rejected))
      labels.append(0)
      wheres.append(pair.where)
    if both_orders or not chosen_first:
      triples.append((pair.prompt, pair.rejected, pair.chosen))
      labels.append(1)
      wheres.append(f"{pair.where} (swapped)")
  encoded, trimmed = encoder.encode_many(triples)
  return encode.TokenizedSet.build([
      encode.Example(ids=np.asarray(ids, np.int32), prompt_len=len(ids),
                     trimmed=bool(t), label=label, where=where)
      for ids, t, label, where in zip(encoded, trimmed, labels, wheres)])


def make_evaluator(c, tokenizer, eval_pairs: list[preference.PreferencePair], mesh):
  """Held-out accuracy with the official readout, for the current params."""
  def evaluate(graphdef: nnx.GraphDef, params: dict) -> dict:
    reward = RewardModel(nnx.merge(graphdef, params), tokenizer, max_len=c.data.cutoff_len,
                         batch_size=c.eval.batch_size, template=configlib.judge_template(c),
                         labels=tuple(c.template.labels), mesh=mesh,
                         chat_template=c.tokenizer.chat_template or None)
    scores = reward.score_batch([(p.prompt, p.chosen, p.rejected) for p in eval_pairs])
    return {"accuracy": float((scores[:, 0] > scores[:, 1]).mean())}
  return evaluate


def run(c: ml_collections.ConfigDict) -> None:
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  tokenizer = model_setup.load_or_build_tokenizer(c)
  encoder = JudgeEncoder(tokenizer, c.data.cutoff_len, configlib.judge_template(c),
                         tuple(c.template.labels), c.tokenizer.chat_template or None)
  train_files = configlib.data_files(c.data.train_files)
  eval_files = configlib.data_files(c.eval.files)
  if not train_files:
    train_files, eval_files = builtin_files(c)
  read = functools.partial(records.read_records, parse=preference.parse_preference_pair,
                           on_bad=c.data.on_bad_record)
  pairs, report = read(train_files, shard=(jax.process_index(), jax.process_count()))
  logging.info("finetune data: %s", report.summary())
  dataset = verdict_examples(pairs, encoder, c.data.both_orders, c.seed)
  logging.info("%d verdict examples, %d trimmed to %d tokens", len(dataset), dataset.trimmed,
               c.data.cutoff_len)
  batches = loader.VerdictBatchIterator(dataset, configlib.rows_per_process(c), c.data.cutoff_len,
                                        c.train.micro_batches, c.seed, tokenizer.pad_token_id)
  evaluate = None
  if eval_files:
    eval_pairs, _ = read(eval_files)
    evaluate = make_evaluator(c, tokenizer, eval_pairs, mesh)
  objective = functools.partial(objectives.verdict_loss, label_ids=tuple(encoder.label_ids),
                                smoothing=c.train.label_smoothing)
  cfg = model_setup.model_config(c, tokenizer)
  loop.fit(c, mesh, cfg, tokenizer, batches, objective, c.workdir, evaluate,
           c.eval.every_steps)
