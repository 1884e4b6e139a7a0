"""LM targets are shifted by exactly one and masked to the trained reply: the pre-training and
prover loss of packed rows equals transformers' own `labels=` loss of the same examples one
at a time (an independent implementation of the shift, the mask and the mean)."""
import importlib.util
import os

import jax.numpy as jnp
import pytest
import torch

import gram_jax
from gram_jax.data import encode, loader
from gram_jax.data.records import UnlabeledPair
from gram_jax.stages import recipes
from gram_jax.training import objectives
from tests.helpers import hf_fixtures
from tests.helpers.cli import ROOT

PAIRS = [("What is 2 + 2?", "It is 4.", "Five."),
         ("Name a colour.", "Blue is a colour.", "A colour is a dog."),
         ("Capital of France?", "Paris.", "The capital is Berlin, I think."),
         ("Say hello.", "Hello!", "no"),
         ("Which is larger, 3 or 7?", "7 is larger than 3.", "3.")]


def _config(stage: str):
  spec = importlib.util.spec_from_file_location(stage, os.path.join(ROOT, "configs",
                                                                    f"{stage}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.data.cutoff_len = c.data.seq_len = 256
  return c


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("lm_targets"))
  torch_model = hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return torch_model, gram_jax.load_pretrained(path), hf_fixtures.build_tokenizer()


def _hf_loss_sum(torch_model, examples) -> tuple[float, int]:
  """Σ over examples of transformers' mean `labels=` loss × its target count."""
  total, count = 0.0, 0
  for ids, prompt_len in examples:
    labels = torch.tensor(ids, dtype=torch.long)
    labels[:prompt_len] = -100
    with torch.no_grad():
      loss = torch_model(input_ids=torch.tensor([ids]), labels=labels[None]).loss
    targets = int((labels[1:] != -100).sum())
    total, count = total + float(loss) * targets, count + targets
  return total, count


def _packed_loss(model, dataset, rows: list[list[int]], seq_len: int) -> tuple[float, float]:
  batch = loader.BatchIterator(dataset, rows=len(rows), seq_len=seq_len).assemble(rows)
  batch = {k: jnp.asarray(v[0]) for k, v in batch.items()}
  summed, units = objectives.causal_lm_loss(model, batch)
  return float(summed), float(units)


@pytest.mark.parametrize("stage", ["pretrain", "prover"])
def test_packed_lm_loss_equals_the_transformers_labels_loss(models, stage):
  torch_model, model, tokenizer = models
  c = _config(stage)
  if stage == "pretrain":
    encoder = encode.pretrain_encoder(tokenizer, c.data.cutoff_len)
    examples = [encoder(UnlabeledPair(p, a, b, f"pair {i}")) for i, (p, a, b) in
                enumerate(PAIRS)]
  else:
    encoder = recipes.prover_encoder(c, tokenizer)
    examples = [encoder({"prompt": p, "response_a": a, "response_b": b, "label": "A",
                         "rationale": f"Response A is better: {a}"}, f"pair {i}")
                for i, (p, a, b) in enumerate(PAIRS)]
  dataset = encode.TokenizedSet.build(examples)
  rows = [[0, 1, 2], [3, 4]]  # three examples packed in one row, two in the other
  seq_len = max(sum(len(examples[i].ids) for i in row) for row in rows) + 3
  summed, units = _packed_loss(model, dataset, rows, seq_len)
  expected_sum, expected_count = _hf_loss_sum(
      torch_model, [(list(e.ids), e.prompt_len) for e in examples])
  assert units == expected_count
  assert summed == pytest.approx(expected_sum, rel=1e-4)
  assert all(e.prompt_len > 1 for e in examples)  # the prompt is really masked
