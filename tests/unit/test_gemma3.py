"""Gemma 3's own features against transformers: packed rows longer than the sliding window,
every kernel on them, and judge prompts under a chat template with no system turn."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import gram_jax
from gram_jax.data.encode import JudgeEncoder
from gram_jax.hf import mapping
from tests.helpers import hf_fixtures

@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("gemma3"))
  return path, hf_fixtures.make_hf_model("gemma3", path, with_tokenizer=True)


@pytest.mark.parametrize("implementation", ["xla", "flash", "splash"])
def test_packed_rows_longer_than_the_window_equal_each_document_alone(gemma, implementation):
  """Two documents of 11 and 9 tokens (window 4) packed in one row, positions restarting:
  each one's logits are transformers' logits of that document alone."""
  path, torch_model = gemma
  model = gram_jax.load_pretrained(path)
  model.config = model.config.replace(attention=implementation, attention_block_q=128,
                                      attention_block_kv=128)
  for layer in model.layers:
    layer.attn.config = model.config
  rng = np.random.default_rng(0)
  docs = [rng.integers(4, hf_fixtures.VOCAB, n) for n in (11, 9)]
  width = 128 if implementation == "splash" else 24  # splash blocks are 128 wide
  ids = np.zeros((1, width), np.int64)
  segments = np.zeros((1, width), np.int32)
  positions = np.zeros((1, width), np.int32)
  start = 0
  for number, doc in enumerate(docs, 1):
    ids[0, start:start + len(doc)] = doc
    segments[0, start:start + len(doc)] = number
    positions[0, start:start + len(doc)] = np.arange(len(doc))
    start += len(doc)
  hidden = model.hidden_states(jnp.asarray(ids), positions=jnp.asarray(positions),
                               segment_ids=jnp.asarray(segments))
  got = np.asarray(model.logits(hidden))[0]
  start = 0
  for doc in docs:
    alone = hf_fixtures.hf_logits(torch_model, doc[None], np.ones((1, len(doc)), np.int64))[0]
    assert np.abs(got[start:start + len(doc)] - alone).max() <= 1e-4
    start += len(doc)


def test_judge_prompts_render_under_a_template_with_no_system_turn(gemma):
  path, _ = gemma
  tokenizer = gram_jax.text.tokenizer.load_tokenizer(path)
  encoder = JudgeEncoder(tokenizer, 4096, chat_template=hf_fixtures.GEMMA_CHAT_TEMPLATE)
  encoded, trimmed = encoder.encode_many([("What is 2 + 2?", "4.", "5.")])
  text = tokenizer.decode(encoded[0])
  assert "<start_of_turn>user" in text and text.rstrip().endswith("<start_of_turn>model")
  assert "What is 2 + 2?" in text and not trimmed[0]


def test_training_loss_and_every_gradient_equal_transformers(gemma):
  """Full training: the next-token loss of right-padded rows longer than the window, and its
  gradient for every parameter, against transformers' loss.backward()."""
  path, torch_model = gemma
  ids, mask = hf_fixtures.padded_batch(left=False)
  model = gram_jax.load_pretrained(path)
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(params):
    logits = nnx.merge(graphdef, params)(jnp.asarray(ids), jnp.asarray(mask))[:, :-1]
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.asarray(ids)[:, 1:, None], axis=-1)[..., 0]
    valid = jnp.asarray(mask)[:, 1:]
    return jnp.sum(nll * valid) / jnp.sum(valid)

  value, grads = jax.value_and_grad(loss)(params)
  grads = nnx.to_pure_dict(grads)
  labels = torch.tensor(np.where(mask > 0, ids, -100))
  torch_model.zero_grad()
  out = torch_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    labels=labels)
  out.loss.backward()
  assert float(value) == pytest.approx(out.loss.item(), rel=1e-5)
  named = dict(torch_model.named_parameters())
  for spec in mapping.param_specs(model.config):
    ours = grads
    for key in spec.path:
      ours = ours[key]
    theirs = named[spec.hf_name].grad.numpy()
    got = spec.to_hf(np.asarray(ours))
    assert np.abs(got - theirs).max() <= 1e-4 * max(np.abs(theirs).max(), 1e-6), spec.hf_name


def test_a_pre_v5_config_reads_its_local_rope_base(gemma):
  """transformers 4.x wrote Gemma 3's bases as rope_theta and rope_local_base_freq."""
  from gram_jax.hf.config import model_config_from_hf, read_config_json
  raw = read_config_json(gemma[0])
  raw.pop("rope_parameters")
  config = model_config_from_hf({**raw, "rope_theta": 1e6, "rope_local_base_freq": 2e4})
  assert (config.rope_theta, config.rope_local_theta) == (1e6, 2e4)
