"""Gemma 3 270M, the second real pretrained model (PyPI chunk packages under the Gemma Terms
of Use, joined and built into the user cache by `gram_jax.hf.gemma3_270m`): its config reads
as Gemma 3 with sliding-window layers, its logits equal transformers' on real text longer
than the window, and greedy generation is token-identical. Skips only when PyPI cannot be
reached."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gram_jax
from gram_jax import pretrained
from gram_jax.data.encode import JudgeEncoder
from gram_jax.hf import gemma3_270m
from gram_jax.inference.generate import Generator
from tests.helpers import hf_fixtures, official

# Real text of more than the 512-token window: the sliding layers drop its head.
TEXT = " ".join(["The capital of France is Paris, a city on the Seine known for its museums,",
                 "its cafes and the long history of its streets and bridges."] * 30)


@pytest.fixture(scope="module")
def gemma():
  return official.real_model(gemma3_270m.gemma3_270m)


def test_the_config_reads_as_gemma3_with_sliding_layers(gemma):
  config = gram_jax.load_pretrained(gemma[0]).config
  assert config.family == "gemma3_text" and config.sliding_window == 512
  assert config.layer_types.count("full") == 3 and len(config.layer_types) == 18
  assert (config.rope_theta, config.rope_local_theta) == (1e6, 1e4)


def test_logits_equal_transformers_on_real_text_longer_than_the_window(gemma):
  path, torch_model = gemma
  tokenizer = pretrained.load_tokenizer(path)
  ids = tokenizer(TEXT)["input_ids"]
  assert len(ids) > 600
  ours = np.asarray(gram_jax.load_pretrained(path)(jnp.asarray([ids])))
  with torch.no_grad():
    theirs = torch_model(torch.tensor([ids])).logits.numpy()
  assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-4


def test_a_judging_prompt_in_gemma_turns_and_greedy_generation_is_token_identical(gemma):
  path, torch_model = gemma
  tokenizer = pretrained.load_tokenizer(path)
  encoder = JudgeEncoder(tokenizer, 4096, chat_template=hf_fixtures.GEMMA_CHAT_TEMPLATE)
  prompt, _ = encoder("What is the capital of France?", "The capital of France is Paris.",
                      "The capital of France is Berlin.")
  turn = tokenizer.convert_tokens_to_ids("<start_of_turn>")
  assert prompt.count(turn) == 2  # Gemma's own control token, once per turn
  prompts = [prompt, tokenizer("The capital of France is")["input_ids"]]
  generated = Generator(gram_jax.load_pretrained(path), tokenizer, batch_size=2).generate(
      prompts, max_new_tokens=16)
  expected = official.hf_greedy(torch_model, prompts, 16, eos_id=tokenizer.eos_token_id,
                                pad_id=tokenizer.pad_token_id)
  official.assert_greedy_equal(generated, expected, tokenizer.eos_token_id)
