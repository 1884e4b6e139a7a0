"""GRAM-R² preference-proving model π_ψ: LM loss on a rationale given the pair and its label.

Seed records are {prompt, response_a, response_b, label, rationale} (strong-LLM or hand-written
proofs); the default is the built-in task with its templated proofs. The trained prover writes
rationales for labels it is given, which self-training turns into reward-model targets.
"""
import functools
import os

import jax
import ml_collections
from absl import logging

from gram_jax import stages
from gram_jax import (configlib, loop, model_setup, objectives, parallel, rationale, synthetic,
                      truncation)
from gram_jax.data import encode, loader, preference, records


# A generated proof can run long: after the responses and the question, the rationale
# itself is trimmed (its end), so one runaway proof never stops a run.
PROOF_TRIM_ORDER = truncation.DEFAULT_ORDER + (("rationale",),)


def prover_encoder(c: ml_collections.ConfigDict, tokenizer) -> encode.ReplyEncoder:
  template = configlib.prover_template(c)
  return encode.ReplyEncoder(
      tokenizer, c.data.cutoff_len, template, reply=lambda f: f["rationale"],
      values=lambda f: {**encode.pair_values(f), "label": f["label"]},
      chat_template=c.tokenizer.chat_template or None, trim_order=PROOF_TRIM_ORDER)


def seed_files(c: ml_collections.ConfigDict) -> list[str]:
  files = configlib.data_files(c.data.train_files)
  if files:
    return files
  pairs = lambda: synthetic.make_pairs(c.data.builtin_pairs, c.seed, configlib.builtin_tasks(c))
  return [stages.builtin_jsonl(os.path.join(c.workdir, "data", "seed_proofs.jsonl"),
                               lambda: synthetic.as_proved(pairs(), c.seed))]


def policy_encoder(c: ml_collections.ConfigDict, tokenizer) -> encode.ReplyEncoder:
  """π_φ's targets: the judging prompt, then rationale and verdict in the configured format."""
  template = configlib.judge_template(c)
  return encode.ReplyEncoder(
      tokenizer, c.data.cutoff_len, template,
      reply=lambda f: rationale.format_target(f["rationale"], f["label"],
                                              c.template.rationale_format),
      chat_template=c.tokenizer.chat_template or None, trim_order=PROOF_TRIM_ORDER)


def train_on_proofs(c: ml_collections.ConfigDict, tokenizer, files: list[str],
                    encoder: encode.ReplyEncoder, workdir: str) -> None:
  """LM training on proved pairs (prover or policy targets); resumes from `workdir`."""
  mesh = parallel.make_mesh(c.mesh.to_dict(), c.dcn_mesh.to_dict())
  parse = functools.partial(preference.parse_proved_pair, labels=tuple(c.template.labels))
  proofs, report = records.read_records(files, parse, c.data.on_bad_record,
                                        shard=(jax.process_index(), jax.process_count()))
  logging.info("%s: %s", workdir, report.summary())
  dataset = encode.TokenizedSet.build([encoder(vars(p), p.where) for p in proofs])
  batches = loader.BatchIterator(dataset, configlib.rows_per_process(c), c.data.seq_len,
                                 c.train.micro_batches, seed=c.seed, pack=c.data.pack,
                                 pad_id=tokenizer.pad_token_id)
  cfg = model_setup.model_config(c, tokenizer)
  loop.fit(c, mesh, cfg, tokenizer, batches, objectives.causal_lm_loss, workdir)


def run(c: ml_collections.ConfigDict) -> None:
  tokenizer = model_setup.load_or_build_tokenizer(c)
  train_on_proofs(c, tokenizer, seed_files(c), prover_encoder(c, tokenizer), c.workdir)
