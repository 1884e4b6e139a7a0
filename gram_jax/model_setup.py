"""What a training stage starts from: tokenizer, model config and (sharded) parameters."""
import os
from typing import Any

import jax
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from gram_jax import configlib, parallel, pretrained, synthetic, templates
from gram_jax import tokenizer as tok
from gram_jax.hf import load as hf_load
from gram_jax.models.config import FAMILY_DEFAULTS, ModelConfig
from gram_jax.models.decoder import Decoder

BUILTIN_VOCAB = 1024


def load_or_build_tokenizer(c: ml_collections.ConfigDict) -> Any:
  """The configured tokenizer, else the model's, else the built-in BPE (saved in workdir)."""
  path = c.tokenizer.path or c.model.path
  if path:
    return tok.load_tokenizer(path)
  saved = os.path.join(c.workdir, "tokenizer")
  if os.path.isfile(os.path.join(saved, "tokenizer.json")):
    return tok.load_tokenizer(saved)
  texts = list(synthetic.corpus(synthetic.make_pairs(2000, seed=1234)))
  texts += [templates.GRAM_JUDGE_PROMPT, templates.PRETRAIN_OUTPUT] * 20
  tokenizer = tok.train_bpe_tokenizer(texts, vocab_size=BUILTIN_VOCAB)
  if jax.process_index() == 0:
    tokenizer.save_pretrained(saved)
  return tokenizer


def model_config(c: ml_collections.ConfigDict, tokenizer: Any) -> ModelConfig:
  """From model.path when set, else model.init sized to the tokenizer."""
  dtype = configlib.compute_dtype(c)
  if c.model.path:
    cfg = pretrained.read_model_config(c.model.path)
    return cfg.replace(param_dtype=c.model.param_dtype, dtype=dtype, remat=c.model.remat,
                       attention=c.model.attention)
  init = c.model.init.to_dict()
  family = init.pop("family")
  return ModelConfig(
      family=family, vocab_size=len(tokenizer), **FAMILY_DEFAULTS[family], **init,
      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
      pad_token_id=tokenizer.pad_token_id, param_dtype=c.model.param_dtype, dtype=dtype,
      remat=c.model.remat, attention=c.model.attention)


def abstract_state(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  return hf_load.abstract_model(cfg)


def initial_params(c: ml_collections.ConfigDict, cfg: ModelConfig, mesh: Mesh) -> dict:
  """Pretrained weights from model.path, or a fresh init made directly on its shardings."""
  rules = tuple(c.rules)
  if c.model.path:
    model = pretrained.load_pretrained(c.model.path, dtype=cfg.param_dtype, mesh=mesh,
                                       compute_dtype=cfg.dtype, rules=rules)
    return nnx.to_pure_dict(nnx.state(model))
  _, abstract = abstract_state(cfg)
  shardings = parallel.param_shardings(abstract, mesh, rules)
  init = lambda: nnx.to_pure_dict(nnx.state(Decoder(cfg, nnx.Rngs(c.seed))))
  return jax.jit(init, out_shardings=shardings)()
