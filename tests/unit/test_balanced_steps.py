"""Balanced steps (config.data.balanced_steps): every step holds both A/B orders of each pair
it trains on, every pair once an epoch, and a resumed run replays the same steps."""
import numpy as np
import pytest

from gram_jax.data import encode, loader
from gram_jax.errors import GramError


def _pairs(count: int, seed: int = 0, low: int = 4, high: int = 21) -> encode.TokenizedSet:
  """Both orders of `count` pairs, as recipes.verdict_examples lays them out: the pair's
  chosen-first prompt (label 0), then its swapped one (label 1), of about the same length."""
  rng = np.random.RandomState(seed)
  examples = []
  for pair, n in enumerate(rng.randint(low, high, count)):
    for label, extra in ((0, 0), (1, int(rng.randint(0, 2)))):
      examples.append(encode.Example(rng.randint(1, 96, n + extra).astype(np.int32),
                                     prompt_len=n + extra, label=label, where=f"p{pair}"))
  return encode.TokenizedSet.build(examples)


@pytest.mark.parametrize("pack", [True, False])
def test_every_step_holds_both_orders_of_its_pairs_and_is_balanced(pack):
  data = _pairs(40)
  batches = loader.PairedVerdictBatchIterator(data, rows=3, seq_len=48, micro_batches=2,
                                              seed=1, pack=pack, max_pairs_per_row=4)
  seen = []
  steps = 12 if pack else 20
  for _ in range(steps):
    batch = next(batches)
    sources = batches.taken_sources()
    filled = batch["weights"] > 0
    labels = batch["labels"][filled]
    # As many A-labelled as B-labelled prompts, and each pair's two orders both here.
    assert (labels == 0).sum() == (labels == 1).sum() > 0
    # (a step that crosses into the next epoch may hold a pair of both epochs: 4 prompts)
    assert all(sources.count(name) % 2 == 0 for name in sources)
    seen += sources[::2]
    if not pack:
      assert filled.sum(axis=-1).max() == 1  # one prompt a row
  first_epoch = seen[:40]
  assert len(set(first_epoch)) == 40  # every pair once before any repeats


def test_unbalanced_steps_split_pairs_and_tilt_a_b():
  """The per-epoch iterator (balanced_steps=false) mixes orders freely: some step is unbalanced."""
  data = _pairs(40)
  batches = loader.VerdictBatchIterator(data, rows=3, seq_len=48, micro_batches=2, seed=1,
                                        pack=True, max_pairs_per_row=4)
  tilts = []
  for _ in range(8):
    batch = next(batches)
    filled = batch["weights"] > 0
    tilts.append(int((batch["labels"][filled] == 0).sum() - (batch["labels"][filled] == 1).sum()))
  assert any(tilts)


def test_a_resumed_iterator_replays_the_same_steps():
  data = _pairs(30, seed=2)
  make = lambda: loader.PairedVerdictBatchIterator(data, rows=2, seq_len=40, micro_batches=1,
                                                   seed=3, pack=True, max_pairs_per_row=4)
  straight = make()
  for _ in range(5):
    next(straight)
  state = straight.state()
  expected = [next(straight) for _ in range(6)]
  restored = make()
  restored.restore(state)
  skipped = make()
  skipped.skip(5)
  assert skipped.state() == state
  for batches in (restored, skipped):
    for want in expected:
      got = next(batches)
      for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_steps_per_epoch_follow_from_the_rows_the_pairs_fill():
  data = _pairs(24, seed=4, low=10, high=11)  # every prompt 10 or 11 tokens
  batches = loader.PairedVerdictBatchIterator(data, rows=4, seq_len=11, micro_batches=1,
                                              seed=0, pack=False)
  # One prompt a row, 4 rows a step: two pairs a step, 12 steps an epoch.
  assert batches.rows_per_epoch() == 12 * 4


def test_a_pair_that_cannot_share_one_step_is_refused_naming_it():
  data = _pairs(3, seed=5, low=30, high=31)
  batches = loader.PairedVerdictBatchIterator(data, rows=1, seq_len=32, micro_batches=1,
                                              seed=0, pack=True)
  with pytest.raises(GramError, match=r"p\d: the pair's two orders do not fit one step of 1 "
                     r"rows.*balanced_steps"):
    next(batches)


def test_an_odd_example_count_is_refused():
  data = encode.TokenizedSet.build([encode.Example(np.arange(1, 5, dtype=np.int32), 4,
                                                   label=0)])
  with pytest.raises(GramError, match="both orders of every pair"):
    loader.PairedVerdictBatchIterator(data, rows=2, seq_len=8)
