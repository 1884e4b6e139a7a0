"""Proof generation and selection (paper Eq. 5) wired as the paper says, checked against log
probabilities computed independently with transformers: log π(z | s, l) after the prover
prompt, log π(z) after an empty user turn, each summed over the proof's tokens (its EOS
included), candidate j of item i at [i][j], the best Score = -log π(z | s, l) / log π(z)."""
import numpy as np
import pytest
import torch

import gram_jax
from gram_jax.inference import proving
from gram_jax.inference.generate import Generator, Sampling
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures

ITEMS = [{"prompt": "What is 2 + 2?", "response_a": "It is 4.", "response_b": "Five.",
          "label": "A"},
         {"prompt": "Name a colour.", "response_a": "A dog.", "response_b": "Blue.",
          "label": "B"},
         {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Rome.",
          "label": "A"}]
K = 3


@pytest.fixture(scope="module")
def prover(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("prover"))
  torch_model = hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  tokenizer = tok.load_tokenizer(path)
  return torch_model, Generator(gram_jax.load_pretrained(path), tokenizer, batch_size=4,
                                max_prompt_len=256), tokenizer


def _summed_logprob(torch_model, context: list[int], continuation: list[int]) -> float:
  ids = torch.tensor([context + continuation])
  with torch.no_grad():
    logprobs = torch.log_softmax(torch_model(ids).logits[0].double(), -1)
  start = len(context)
  return float(sum(logprobs[start + t - 1, token] for t, token in enumerate(continuation)))


def test_prove_batch_selects_by_conditional_over_unconditional_log_likelihood(prover):
  torch_model, generator, tokenizer = prover
  prompts = proving.prover_prompts(tokenizer, templates.PROVER_PROMPT, 256)
  context = proving.empty_context(tokenizer)
  sampling = Sampling(temperature=1.0)
  proofs = proving.prove_batch(generator, prompts, ITEMS, K, 12, sampling, seed=3,
                               context=context)
  candidates = [generator.generate([list(p.prompt_ids) for p in proofs], 12, sampling,
                                   seed=3 + 7 * j) for j in range(K)]
  assert context == tok.encode_user_turn(tokenizer, "{input}", {"input": ""})
  eos = tokenizer.eos_token_id
  for i, (item, proof) in enumerate(zip(ITEMS, proofs)):
    expected_prompt = tok.encode_user_turn(tokenizer, templates.PROVER_PROMPT, {
        "input": item["prompt"], "response_a": item["response_a"],
        "response_b": item["response_b"], "label": item["label"]})
    assert list(proof.prompt_ids) == expected_prompt and not proof.trimmed
    conditional, unconditional = [], []
    for j in range(K):
      generation = candidates[j][i]
      tokens = generation.token_ids + ([eos] if generation.finish_reason == "eos" else [])
      conditional.append(_summed_logprob(torch_model, expected_prompt, tokens))
      unconditional.append(_summed_logprob(torch_model, context, tokens))
    np.testing.assert_allclose(proof.conditional, conditional, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(proof.unconditional, unconditional, rtol=1e-4, atol=1e-3)
    scores = [-c / u for c, u in zip(conditional, unconditional)]
    best = max(range(K), key=lambda j: (scores[j], -j))  # the first best on a tie
    assert proof.chosen == best
    assert proof.rationale == (candidates[best][i].text.strip() or "No rationale.")
  texts = {c[i].text for c in candidates for i in range(len(ITEMS))}
  assert len(texts) > len(ITEMS)  # the k samples differ, so the choice means something
