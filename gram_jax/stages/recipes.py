"""Training recipes more than one stage runs: LM training on proved pairs (π_ψ and π_φ) and
GRAM label-smoothed verdict fine-tuning. Self-training runs them for its prover, policy and
labeled-only baseline, so stages never import each other."""
import functools
import random
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from gram_jax import position_bias
from gram_jax.config.mesh import device_mesh
from gram_jax.config.template import chat_template, judge_template, prover_template
from gram_jax.config.train import rows_per_process
from gram_jax.data import benchmarks, encode, loader, preference, rationales, records
from gram_jax.errors import GramError
from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import Reasoning, prompt_name, write_judge_card
from gram_jax.stages import common
from gram_jax.text import rationale, truncation
from gram_jax.training import loop, objectives

# A generated proof can run long: after the responses and the question, the rationale
# itself is trimmed (its end), so one runaway proof never stops a run.
PROOF_TRIM_ORDER = truncation.DEFAULT_ORDER + (("rationale",),)


def record_judge(c: ml_collections.ConfigDict, workdir: str,
                 reasoning: Reasoning | None = None) -> None:
  """The judge card of a model this run trained: the prompt, labels and chat template it was
  trained with, and how to read it (reasoning None: a GRAM verdict judge), so every reader
  uses the same prompt."""
  if jax.process_index() == 0:
    write_judge_card(workdir, judge_template(c, reasoning is not None),
                     c.template.labels, reasoning, chat_template(c))


def policy_reasoning(c: ml_collections.ConfigDict, max_new_tokens: int) -> Reasoning:
  """How a self-trained policy is read as it is measured: one greedy judgment per order."""
  return Reasoning(c.template.rationale_format, max_new_tokens)


def prover_encoder(c: ml_collections.ConfigDict, tokenizer) -> encode.ReplyEncoder:
  """π_ψ's targets: the rationale, given the pair and its label."""
  template = prover_template(c)
  return encode.ReplyEncoder(
      tokenizer, c.data.cutoff_len, template, reply=lambda f: f["rationale"],
      values=lambda f: {**encode.pair_values(f), "label": f["label"]},
      chat_template=chat_template(c), trim_order=PROOF_TRIM_ORDER)


def policy_encoder(c: ml_collections.ConfigDict, tokenizer) -> encode.ReplyEncoder:
  """π_φ's targets: the judging prompt, then rationale and verdict in the configured format."""
  template = judge_template(c, reasoning=True)
  return encode.ReplyEncoder(
      tokenizer, c.data.cutoff_len, template,
      reply=lambda f: rationale.format_target(f["rationale"], f["label"],
                                              c.template.rationale_format),
      chat_template=chat_template(c), trim_order=PROOF_TRIM_ORDER)


def train_lm(c: ml_collections.ConfigDict, tokenizer, files: list[str],
             parse: Callable[[Any, str], Any], encoder: Callable[[Any], encode.Example],
             workdir: str, skip_unfit: bool = False) -> None:
  """Next-token training on the replies of `files`' records (parsed, then encoded); every
  LM stage's pipeline: GRAM pre-training, the prover, the policy. Resumes from `workdir`.

  `skip_unfit`: a record that cannot fit data.cutoff_len even with every field cut (a
  runaway generated proof) is skipped and counted instead of stopping the run."""
  mesh = device_mesh(c)
  records_read, report = records.read_records(files, parse, c.data.on_bad_record,
                                              shard=(jax.process_index(), jax.process_count()))
  logging.info("%s: %s", workdir, report.summary())
  examples, unfit = [], []
  for record in records_read:
    try:
      examples.append(encoder(record))
    except GramError as e:
      if not skip_unfit:
        raise
      unfit.append(str(e))
  if unfit:
    logging.warning("%s: skipped %d of %d examples that cannot fit even when cut (first: %s)",
                    workdir, len(unfit), len(records_read), unfit[0])
  if not examples:
    raise GramError(f"{workdir}: no example fits config.data.cutoff_len={c.data.cutoff_len} "
                    f"({unfit[0] if unfit else 'no records'})")
  dataset = encode.TokenizedSet.build(examples)
  logging.info("%s: encoded %d examples (%d trimmed to %d tokens)", workdir, len(dataset),
               dataset.trimmed, c.data.cutoff_len)
  batches = loader.BatchIterator(dataset, rows_per_process(c), c.data.seq_len,
                                 c.train.micro_batches, seed=c.seed, pack=c.data.pack,
                                 pad_id=tokenizer.pad_token_id)
  model_config = common.make_model_config(c, tokenizer)
  objective = functools.partial(objectives.causal_lm_loss, chunk_len=c.train.loss_chunk_len)
  loop.fit(common.training_settings(c, workdir, batches), mesh, model_config, tokenizer,
           batches, objective, init_params=lambda: common.initial_params(c, model_config, mesh))


def train_on_proofs(c: ml_collections.ConfigDict, tokenizer, files: list[str],
                    encoder: encode.ReplyEncoder, workdir: str,
                    generated: bool = False) -> None:
  """LM training on proved pairs (prover or policy targets); `generated` proofs that cannot
  fit are skipped and counted (a user's seed proofs stop the run with the error)."""
  parse = functools.partial(rationales.parse_proved_pair, labels=tuple(c.template.labels))
  train_lm(c, tokenizer, files, parse, lambda proof: encoder(vars(proof), proof.where),
           workdir, skip_unfit=generated)


def verdict_examples(pairs: list[preference.PreferencePair], encoder: encode.JudgeEncoder,
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


def heldout_accuracy(c: ml_collections.ConfigDict, tokenizer,
                     eval_pairs: list[preference.PreferencePair], mesh,
                     workdir: str) -> loop.Evaluation:
  """Held-out accuracy with the official readout, position consistency and the mean P(first
  slot), for the current params; measured before the first step too (the base model), and
  a one-line warning whenever the judge answers by slot (position_bias.answers_by_slot)."""
  triples = [(p.prompt, p.chosen, p.rejected) for p in eval_pairs]
  base = loop.first_evaluation(workdir, "eval")

  def evaluate(graphdef: nnx.GraphDef, params: dict, step: int) -> dict:
    reward = RewardModel(nnx.merge(graphdef, params), tokenizer, max_len=c.data.cutoff_len,
                         batch_size=c.eval.batch_size, template=judge_template(c),
                         labels=tuple(c.template.labels), mesh=mesh,
                         chat_template=chat_template(c))
    first, second, _ = reward.scorer.order_probs(triples)
    figures = position_bias.order_readout(first, second)
    if step == 0:
      base.update(figures)
    elif warning := position_bias.answers_by_slot(figures, base or None):
      logging.warning("%s, step %d: %s", workdir, step, warning)
      figures["answers_by_slot"] = 1.0
    return figures
  return loop.Evaluation("eval", evaluate, c.eval.every_steps, at_start=c.eval.every_steps > 0)


def finetune_verdicts(c: ml_collections.ConfigDict, train_files: list[str],
                      eval_files: list[str]) -> None:
  """GRAM stage 2 on `train_files`, held-out accuracy on `eval_files` as it trains."""
  mesh = device_mesh(c)
  tokenizer = common.load_or_build_tokenizer(c)
  encoder = encode.JudgeEncoder(tokenizer, c.data.cutoff_len, judge_template(c),
                                tuple(c.template.labels), chat_template(c))
  read = functools.partial(records.read_records, parse=preference.parse_preference_pair,
                           on_bad=c.data.on_bad_record)
  pairs, report = read(train_files, shard=(jax.process_index(), jax.process_count()))
  logging.info("finetune data: %s", report.summary())
  dataset = verdict_examples(pairs, encoder, c.data.both_orders, c.seed)
  logging.info("%d verdict examples, %d trimmed to %d tokens", len(dataset), dataset.trimmed,
               c.data.cutoff_len)
  iterator = (loader.PairedVerdictBatchIterator if c.data.balanced_steps
              else loader.VerdictBatchIterator)
  batches = iterator(dataset, rows_per_process(c), c.data.seq_len,
                     c.train.micro_batches, c.seed, c.data.pack, tokenizer.pad_token_id,
                     c.data.max_pairs_per_row)
  evaluations = []
  if eval_files:
    eval_pairs, selection = benchmarks.select_records(read(eval_files)[0], c.eval.max_pairs,
                                                      c.eval.sample, c.seed)
    if selection:
      logging.info("held-out accuracy on %s %d of %d pairs (config.eval.max_pairs)",
                   selection["how"], selection["records"], selection["of"])
    evaluations.append(heldout_accuracy(c, tokenizer, eval_pairs, mesh, c.workdir))
  objective = functools.partial(objectives.verdict_loss, label_ids=tuple(encoder.label_ids),
                                smoothing=c.train.label_smoothing)
  model_config = common.make_model_config(c, tokenizer)
  logging.info("judge prompt %s, labels %s", prompt_name(encoder.template),
               "/".join(c.template.labels))
  record_judge(c, c.workdir)
  loop.fit(common.training_settings(c, c.workdir, batches), mesh, model_config, tokenizer,
           batches, objective, init_params=lambda: common.initial_params(c, model_config, mesh),
           evaluations=evaluations)
