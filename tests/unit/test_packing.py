"""Packed rows train exactly what padded rows train: per-example losses and gradients of the
verdict loss (GRAM stage 2) and of the LM loss (pre-training, prover, policy) do not depend on
which examples share a row; the chunked LM loss equals the full one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gram_jax.data import encode, loader
from gram_jax.inference.batching import left_pad
from gram_jax.models.config import tiny_config
from gram_jax.models.decoder import Decoder, verdict_logits
from gram_jax.training import chunked_loss, objectives
from tests.helpers import train_fixtures

LABEL_IDS = (7, 11)


def _model(tie: bool = True) -> Decoder:
  config = tiny_config("qwen3", vocab_size=96, hidden_size=32, intermediate_size=64,
                       num_heads=4, num_kv_heads=2, head_dim=8, tie_word_embeddings=tie)
  return Decoder(config, nnx.Rngs(3))


def _verdict_data(count: int = 9, seed: int = 0) -> encode.TokenizedSet:
  rng = np.random.RandomState(seed)
  return encode.TokenizedSet.build([
      encode.Example(rng.randint(1, 96, n).astype(np.int32), prompt_len=n,
                     label=int(rng.randint(0, 2)))
      for n in rng.randint(4, 21, count)])


def _verdict_loss(model, batch):
  return objectives.verdict_loss(model, batch, LABEL_IDS, smoothing=0.1)


def _per_slot_losses(model, batch, loss_fn) -> dict[tuple, float]:
  """Each filled slot's loss alone (the others weighted 0), keyed by (m, r, slot)."""
  graphdef, params = nnx.split(model)
  summed = jax.jit(lambda p, b: loss_fn(nnx.merge(graphdef, p), b)[0])
  losses = {}
  for where in zip(*np.nonzero(batch["weights"])):
    alone = dict(batch, weights=np.zeros_like(batch["weights"]))
    alone["weights"][where] = 1.0
    losses[where] = float(summed(params, jax.tree.map(lambda x: x[0], alone)))
  return losses


def _grads(model, batch, loss_fn):
  graphdef, params = nnx.split(model)
  def total(p):
    summed, _ = loss_fn(nnx.merge(graphdef, p), jax.tree.map(lambda x: x[0], batch))
    return summed
  return jax.jit(jax.grad(total))(params)


def _assert_trees_close(a, b, rtol=2e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_packed_verdict_rows_give_each_pair_the_loss_and_gradient_it_has_alone():
  data, model = _verdict_data(), _model()
  packed = loader.VerdictBatchIterator(data, rows=3, seq_len=48, pack=True,
                                       max_pairs_per_row=4)
  padded = loader.VerdictBatchIterator(data, rows=len(data), seq_len=48, pack=False)
  rows = [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
  packed_batch = packed.assemble(rows)
  padded_batch = padded.assemble([[i] for i in range(len(data))])
  assert (packed_batch["segment_ids"] > 0).sum() == (padded_batch["segment_ids"] > 0).sum()
  in_packed = _per_slot_losses(model, packed_batch, _verdict_loss)
  in_padded = _per_slot_losses(model, padded_batch, _verdict_loss)
  by_example = {rows[r][slot]: loss for (_, r, slot), loss in in_packed.items()}
  assert sorted(by_example) == list(range(len(data)))
  np.testing.assert_allclose([by_example[i] for i in range(len(data))],
                             [in_padded[(0, i, 0)] for i in range(len(data))], rtol=1e-5)
  _assert_trees_close(_grads(model, packed_batch, _verdict_loss),
                      _grads(model, padded_batch, _verdict_loss))


def test_the_verdict_loss_reads_the_logits_the_scorer_reads():
  """Expected values from the left-padded scoring path (checked against transformers in
  test_hf_parity / test_reward), not from the packed objective."""
  data, model = _verdict_data(), _model(tie=False)
  prompts = [data.example(i)[0].tolist() for i in range(len(data))]
  ids, mask = left_pad(prompts, len(prompts), 24, 0)
  logits = nnx.jit(verdict_logits, static_argnums=3)(model, jnp.asarray(ids),
                                                     jnp.asarray(mask), LABEL_IDS)
  expected = objectives.label_smoothed_cross_entropy(logits, data.labels, 0.1)
  packed = loader.VerdictBatchIterator(data, rows=2, seq_len=96, pack=True)
  batch = packed.assemble([[0, 2, 4, 6, 8], [1, 3, 5, 7]])
  ours = _per_slot_losses(model, batch, _verdict_loss)
  order = [0, 2, 4, 6, 8, 1, 3, 5, 7]
  np.testing.assert_allclose([ours[(0, r, s)] for r, row in enumerate([order[:5], order[5:]])
                              for s in range(len(row))],
                             np.asarray(expected)[order], rtol=1e-5)


def test_packed_lm_rows_give_each_example_the_loss_and_gradient_it_has_alone():
  data, model = train_fixtures.random_dataset(count=8, seed=4), _model()
  loss_fn = objectives.causal_lm_loss
  packed = loader.BatchIterator(data, rows=3, seq_len=64, pack=True)
  padded = loader.BatchIterator(data, rows=8, seq_len=64, pack=False)
  packed_batch = packed.assemble([[0, 1, 2], [3, 4, 5], [6, 7]])
  padded_batch = padded.assemble([[i] for i in range(8)])
  squeeze = lambda b: jax.tree.map(lambda x: x[0], b)
  for batch in (packed_batch, padded_batch):
    assert batch["target_mask"].sum() == sum(
        len(data.example(i)[0]) - data.example(i)[1] for i in range(8))
  graphdef, params = nnx.split(model)
  summed = jax.jit(lambda p, b: loss_fn(nnx.merge(graphdef, p), b))
  packed_sum, packed_units = summed(params, squeeze(packed_batch))
  padded_sum, padded_units = summed(params, squeeze(padded_batch))
  assert float(packed_units) == float(padded_units)
  np.testing.assert_allclose(float(packed_sum), float(padded_sum), rtol=1e-5)
  _assert_trees_close(_grads(model, packed_batch, loss_fn), _grads(model, padded_batch, loss_fn))


def test_packing_respects_the_pairs_per_row_cap_and_lowers_padding():
  data = encode.TokenizedSet.build([encode.Example(np.ones(n, np.int32), n, label=0)
                                    for n in [5] * 40])
  capped = loader.VerdictBatchIterator(data, rows=4, seq_len=64, pack=True,
                                       max_pairs_per_row=3)
  batch = next(capped)
  assert (batch["weights"].sum(axis=-1) == 3).all()
  padded = loader.VerdictBatchIterator(data, rows=4, seq_len=64, pack=False)
  assert padded.padding_fraction() == pytest.approx(1 - 5 / 64)
  rows = -(-40 // 3)  # 14 rows of 3 pairs (the last holds 1)
  assert capped.padding_fraction() == pytest.approx(1 - 200 / (rows * 64))


@pytest.mark.parametrize("tie,chunk_len", [(True, 5), (False, 16)])
def test_chunked_cross_entropy_equals_the_full_one_in_value_and_gradient(tie, chunk_len):
  data, model = train_fixtures.random_dataset(count=12, seed=2), _model(tie)
  batch = jax.tree.map(lambda x: x[0], loader.BatchIterator(data, rows=4, seq_len=45).assemble(
      [[0, 1], [2, 3, 4], [5, 6], [7, 8]]))
  graphdef, params = nnx.split(model)
  def loss(p, chunk):
    summed, units = objectives.causal_lm_loss(nnx.merge(graphdef, p), batch, chunk_len=chunk)
    return summed / units
  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  full, full_grads = value_and_grad(params, 0)
  chunked, chunked_grads = value_and_grad(params, chunk_len)
  np.testing.assert_allclose(float(chunked), float(full), rtol=1e-6)
  _assert_trees_close(chunked_grads, full_grads, rtol=1e-5, atol=1e-7)


def test_both_cross_entropies_are_the_textbook_one():
  rng = np.random.RandomState(0)
  hidden = rng.randn(2, 6, 8).astype(np.float32)
  head = rng.randn(8, 30).astype(np.float32)
  targets = rng.randint(0, 30, (2, 6))
  weights = rng.rand(2, 6).astype(np.float32)
  logits = hidden @ head
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(chunked_loss.token_cross_entropy(
      jnp.asarray(hidden), jnp.asarray(head), jnp.asarray(targets)), expected, rtol=1e-5)
  np.testing.assert_allclose(chunked_loss.chunked_cross_entropy_sum(
      jnp.asarray(hidden), jnp.asarray(head), jnp.asarray(targets), jnp.asarray(weights), 4),
      (expected * weights).sum(), rtol=1e-5)


def _epoch_rows(batches: loader.BatchIterator) -> list[list[int]]:
  rows = []
  while batches.epoch == 0 and batches.cursor < len(batches.data):
    rows.append(batches._row())
  return rows


def test_first_fit_packs_every_example_once_tighter_than_next_fit_and_resumes():
  lengths = np.random.RandomState(7).randint(20, 400, 300)
  data = encode.TokenizedSet.build([encode.Example(np.full(n, i + 1, np.int32), 1)
                                    for i, n in enumerate(lengths)])
  make = lambda window: loader.BatchIterator(data, rows=2, seq_len=512, seed=3,
                                             pack_window=window)
  next_fit, first_fit = _epoch_rows(make(0)), _epoch_rows(make(64))
  for rows in (next_fit, first_fit):
    assert sorted(i for row in rows for i in row) == list(range(300))
    assert all(sum(lengths[row]) <= 512 for row in rows)
  assert len(first_fit) < 0.9 * len(next_fit)
  assert make(64).padding_fraction() < make(0).padding_fraction()
  # A position taken out of turn is part of the state: restoring it gives the same rows.
  batches = make(64)
  for _ in range(5):
    next(batches)
  state = batches.state()
  assert state.get("ahead"), "the test should stop with examples taken ahead"
  expected = [next(batches)["input_ids"] for _ in range(3)]
  resumed = make(64)
  resumed.restore(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)["input_ids"], want)
  replayed = make(64)
  replayed.skip(5)
  assert replayed.state() == state
