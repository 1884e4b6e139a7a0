"""What a stage starts from: tokenizer, model config, initial params, training settings,
built-in data files and the RewardModel a config describes."""
import functools
import os
from typing import Any, Callable, Iterable

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from gram_jax import checkpoint, configlib, journal, parallel, pretrained, storage
from gram_jax.config.data import named_files
from gram_jax.config.model import attention_settings, compute_dtype, lora_spec
from gram_jax.config.reasoning import reasoning_settings
from gram_jax.config.template import chat_template, template_setting
from gram_jax.config.train import optimizer_settings
from gram_jax.data import synthetic
from gram_jax.data.loader import ShuffledCursor
from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import read_judge_card
from gram_jax.models import families
from gram_jax.models.config import ModelConfig
from gram_jax.models.decoder import Decoder, abstract_model
from gram_jax.stages import memory_advice
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from gram_jax.training import settings

BUILTIN_VOCAB = 1024


def load_or_build_tokenizer(c: ml_collections.ConfigDict) -> Any:
  """The configured tokenizer, else the model's, else the built-in BPE (saved in workdir)."""
  path = c.tokenizer.path or c.model.path
  if path:
    return pretrained.load_tokenizer(path)
  saved = os.path.join(c.workdir, checkpoint.TOKENIZER)
  if storage.isfile(os.path.join(saved, "tokenizer.json")):
    return tok.load_tokenizer(storage.local_copy(saved))
  texts = list(synthetic.corpus(synthetic.make_pairs(2000, seed=1234)))
  texts += [templates.GRAM_JUDGE_PROMPT, templates.PRETRAIN_OUTPUT] * 20
  tokenizer = tok.train_bpe_tokenizer(texts, vocab_size=BUILTIN_VOCAB)
  if jax.process_index() == 0:
    checkpoint.save_tokenizer(tokenizer, saved)
  return tokenizer


def make_model_config(c: ml_collections.ConfigDict, tokenizer: Any) -> ModelConfig:
  """From model.path when set, else model.init sized to the tokenizer."""
  dtype = compute_dtype(c)
  if c.model.path:
    model_config = pretrained.read_model_config(c.model.path)
    return model_config.replace(param_dtype=c.model.param_dtype, dtype=dtype,
                                remat=c.model.remat, **attention_settings(c))
  init = c.model.init.to_dict()
  family = init.pop("family")
  return ModelConfig(
      family=family, vocab_size=len(tokenizer), **families.family(family).features, **init,
      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
      pad_token_id=tokenizer.pad_token_id, param_dtype=c.model.param_dtype, dtype=dtype,
      remat=c.model.remat, **attention_settings(c))


def load_model(c: ml_collections.ConfigDict, path: str, mesh: Mesh | None = None) -> Decoder:
  """A saved model that this run reads (a judge, a prover, a reference policy), run with the
  compute dtype and attention kernel the run's start-up line names, not those it was saved
  with."""
  return pretrained.load_pretrained(path, mesh=mesh, compute_dtype=compute_dtype(c),
                                    attention=attention_settings(c))


def initial_params(c: ml_collections.ConfigDict, model_config: ModelConfig, mesh: Mesh) -> dict:
  """Pretrained weights from model.path, or a fresh init made directly on its shardings."""
  rules = tuple(c.rules)
  if c.model.path:
    model = pretrained.load_pretrained(c.model.path, dtype=model_config.param_dtype, mesh=mesh,
                                       compute_dtype=model_config.dtype, rules=rules)
    return nnx.to_pure_dict(nnx.state(model))
  _, abstract = abstract_model(model_config)
  shardings = parallel.param_shardings(abstract, mesh, rules)
  init = lambda: nnx.to_pure_dict(nnx.state(Decoder(model_config, nnx.Rngs(c.seed))))
  return jax.jit(init, out_shardings=shardings)()


def total_steps(c: ml_collections.ConfigDict, batches: ShuffledCursor) -> int:
  """train.num_steps, or the steps that cover train.num_epochs of `batches`."""
  if c.train.num_steps > 0:
    return int(c.train.num_steps)
  per_step = batches.rows * batches.micro_batches
  return max(1, int(np.ceil(c.train.num_epochs * batches.rows_per_epoch() / per_step)))


def training_settings(c: ml_collections.ConfigDict, workdir: str,
                      batches: ShuffledCursor) -> settings.Training:
  """Everything training reads of this run's config, typed; the config itself is recorded in
  the run directory and phrases the memory plan's advice."""
  return settings.Training(
      workdir=workdir, steps=total_steps(c, batches), seed=c.seed,
      optimizer=optimizer_settings(c), rules=tuple(c.rules), lora=lora_spec(c),
      checkpoints=settings.Checkpoints(c.checkpoint.every_steps, c.checkpoint.keep,
                                       c.checkpoint.async_save, c.checkpoint.resume_step),
      max_bad_steps=c.train.max_bad_steps, peak_flops_per_device=c.train.peak_flops_per_device,
      memory_capacity_gb=c.train.memory_capacity_gb, dry_run=c.dry_run,
      run_config=c.to_json_best_effort(indent=2), result_fields=configlib.result_fields(c),
      memory_advice=functools.partial(memory_advice.changes, c), base_model=c.model.path)


def builtin_jsonl(path: str, make_rows: Callable[[], Iterable[dict]]) -> str:
  """Writes a built-in data file once (process 0, atomically); every process waits for it."""
  if jax.process_index() == 0 and not storage.exists(path):
    journal.write_jsonl(make_rows(), path)
  parallel.sync(f"builtin:{path}")
  return path


def files_or_builtin(c: ml_collections.ConfigDict, value: str,
                     builtin: dict[str, Callable[[], Iterable[dict]]]) -> list[str]:
  """The files a setting names, else the built-in data: each file's rows (name -> a maker)
  written once under workdir/data, made only while that file is not there."""
  return named_files(value) or [
      builtin_jsonl(os.path.join(c.workdir, "data", name), rows) for name, rows in builtin.items()]


def reasoning_source(c: ml_collections.ConfigDict, card: dict) -> str:
  """Which setting made a judge a reasoning judge (for errors naming it)."""
  if c.reasoning.preset:
    return f"config.reasoning.preset={c.reasoning.preset}"
  if c.reasoning.mode != "auto":
    return f"config.reasoning.mode={c.reasoning.mode}"
  if card.get("released"):
    return f"{c.model.path} (a released GRAM-RR judge: {card['released']})"
  return f"the judge card ({c.model.path}/judge.json)" if card.get("reasoning") else \
      "config.reasoning"


def reward_model(c: ml_collections.ConfigDict, mesh: Mesh, max_len: int, batch_size: int,
                 verdict_len: int | None = None) -> RewardModel:
  """`c.model.path` read as a judge: its judge card, with what the config sets on top
  (`max_len` 0: the judge's prompt budget — a reasoning judge's, or `verdict_len` for a
  verdict judge, None: its context), run with the run's compute dtype and attention kernel.
  Logs the prompt and readout it uses."""
  card = read_judge_card(c.model.path)
  reasoning = reasoning_settings(c, card.get("reasoning"))
  max_len = max_len or (None if reasoning else verdict_len)
  reward = RewardModel.from_pretrained(
      c.model.path, mesh=mesh, compute_dtype=compute_dtype(c), max_len=max_len,
      batch_size=batch_size, template=template_setting(c),
      labels=tuple(c.template.labels) or None, chat_template=chat_template(c),
      reasoning=reasoning, template_field="config.template.judge",
      reasoning_field=reasoning_source(c, card), attention=attention_settings(c), card=card)
  logging.info("judge %s: %s", c.model.path, reward.describe())
  return reward
