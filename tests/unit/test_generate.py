"""Generation: greedy equals transformers generate(); sampling is seeded and respects cut-offs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gram_jax
from gram_jax.inference.decoding import filter_logits, next_tokens
from gram_jax.inference.generate import (Generator, PromptTooLong, Sampling, shared_prompts,
                                         waves)
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures, official

PROMPTS = [[5, 9, 17, 33, 2, 8, 100], [40, 41], [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 12, 13, 14], [99]]


@pytest.fixture(scope="module", params=list(hf_fixtures.FAMILIES))
def family(request, tmp_path_factory):
  path = str(tmp_path_factory.mktemp(request.param))
  torch_model = hf_fixtures.make_hf_model(request.param, path, with_tokenizer=True)
  return path, torch_model


def test_greedy_is_token_identical_to_transformers(family):
  path, torch_model = family
  model = gram_jax.load_pretrained(path)
  tokenizer = tok.load_tokenizer(path)
  generator = Generator(model, tokenizer, batch_size=4)
  ours = generator.generate(PROMPTS, max_new_tokens=12)
  expected = official.hf_greedy(torch_model, PROMPTS, 12, eos_id=tokenizer.eos_token_id)
  for generation, reference in zip(ours, expected):
    produced = generation.token_ids + ([tokenizer.eos_token_id]
                                       if generation.finish_reason == "eos" else [])
    assert produced == reference
  assert sum(len(g.token_ids) for g in ours) > 12  # not everything stopped at once


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("gen"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return Generator(gram_jax.load_pretrained(path), tok.load_tokenizer(path), batch_size=4)


def test_sampling_is_reproducible_and_batch_invariant(generator):
  sampling = Sampling(temperature=1.0, top_k=50, top_p=0.95)
  first = generator.generate(PROMPTS, 10, sampling, seed=3)
  again = generator.generate(PROMPTS, 10, sampling, seed=3)
  other = generator.generate(PROMPTS, 10, sampling, seed=4)
  assert [g.token_ids for g in first] == [g.token_ids for g in again]
  assert [g.token_ids for g in first] != [g.token_ids for g in other]
  # The prompt at index 0, generated with other prompts or (as index 0) alone: same sample.
  alone = generator.generate(PROMPTS[:1], 10, sampling, seed=3)
  assert alone[0].token_ids == first[0].token_ids


def test_stop_strings_cut_the_text(generator):
  free = generator.generate(PROMPTS[:1], 16)[0]
  assert len(free.text) > 3
  stop = free.text[2:4]
  cut = generator.generate(PROMPTS[:1], 16, stop=[stop])[0]
  assert cut.finish_reason == "stop" and stop not in cut.text
  assert free.text.startswith(cut.text)


def test_a_stop_longer_than_the_tokens_to_generate_is_no_error(generator):
  # The verdict readout: one new token, a stop string of several tokens (a 500 before).
  free = generator.generate(PROMPTS[:1], 1)[0]
  stop = generator.generate(PROMPTS[:1], 8)[0].text[:6]
  assert len(generator.tokenizer.encode(stop, add_special_tokens=False)) >= 2
  one = generator.generate(PROMPTS[:1], 1, stop=[stop])[0]
  assert one.token_ids == free.token_ids and one.finish_reason == free.finish_reason


def _sample_many(logits, sampling, count=20000):
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(count))
  batch = jnp.broadcast_to(logits, (count, logits.shape[-1]))
  return np.asarray(next_tokens(batch, keys, jnp.int32(0), sampling))


def test_top_k_respects_cutoff_and_distribution():
  logits = jnp.asarray(np.random.RandomState(0).randn(1, 30).astype(np.float32))
  samples = _sample_many(logits, Sampling(temperature=1.0, top_k=5))
  top5 = set(np.argsort(-np.asarray(logits[0]))[:5].tolist())
  assert set(samples.tolist()) <= top5 and len(set(samples.tolist())) == 5
  probs = np.asarray(jax.nn.softmax(logits[0]))[sorted(top5)]
  expected = probs / probs.sum()
  observed = np.bincount(samples, minlength=30)[sorted(top5)] / len(samples)
  assert np.abs(observed - expected).max() < 0.02


def test_top_p_keeps_the_smallest_nucleus():
  probs = np.array([0.5, 0.25, 0.15, 0.06, 0.04], np.float32)
  logits = jnp.log(jnp.asarray(probs))[None]
  samples = _sample_many(logits, Sampling(temperature=1.0, top_p=0.8))
  # 0.5 + 0.25 < 0.8, so the third token is needed; the fourth and fifth are cut.
  assert set(samples.tolist()) == {0, 1, 2}
  observed = np.bincount(samples, minlength=5)[:3] / len(samples)
  assert np.abs(observed - probs[:3] / probs[:3].sum()).max() < 0.02
  filtered = np.asarray(filter_logits(logits, Sampling(temperature=1.0, top_p=0.8)))
  assert (filtered[0, 3:] < -1e29).all() and (filtered[0, :3] > -1e29).all()


def test_greedy_on_a_mesh_equals_single_device(tmp_path):
  from gram_jax import parallel
  path = str(tmp_path / "m")
  hf_fixtures.make_hf_model("qwen2", path, with_tokenizer=True)
  tokenizer = tok.load_tokenizer(path)
  single = Generator(gram_jax.load_pretrained(path), tokenizer, batch_size=4)
  mesh = parallel.make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
  sharded = Generator(gram_jax.load_pretrained(path, mesh=mesh), tokenizer, batch_size=4,
                      mesh=mesh)
  assert [g.token_ids for g in sharded.generate(PROMPTS, 8)] == [
      g.token_ids for g in single.generate(PROMPTS, 8)]


def test_a_prompt_over_the_budget_is_an_error_naming_the_field_never_a_cut(generator):
  model = nnx.merge(generator.graphdef, generator.params)
  short = Generator(model, generator.tokenizer, batch_size=4, max_prompt_len=8)
  with pytest.raises(PromptTooLong, match=r"prover prompts\[3\]: 13 prompt tokens exceed .*"
                                          r"max_prompt_len=8"):
    short.generate(PROMPTS, max_new_tokens=2, field="prover prompts", first_index=1)


def test_shared_prompts_group_identical_prompts_without_empty_rows():
  groups, samples = shared_prompts([[1, 2], [3], [1, 2], [3], [1, 2], [3], [1, 2], [3]], 16)
  assert samples == 4 and groups == [[0, 2, 4, 6], [1, 3, 5, 7]]
  groups, samples = shared_prompts([[1]] * 6 + [[2]] * 4, 16)  # counts 6 and 4: pairs
  assert samples == 2 and sorted(map(len, groups)) == [2] * 5
  assert shared_prompts([[1]] * 8, 4) == ([[0, 1, 2, 3], [4, 5, 6, 7]], 4)  # at most `most`
  assert shared_prompts([[1], [2], [1]], 8)[1] == 1


def test_waves_end_at_a_length_bucket_once_they_can_refill():
  lengths = [10, 10, 10, 20, 20, 20, 20, 20, 20, 30]
  bucket = lambda i: lengths[i]
  assert waves(list(range(10)), bucket, 2, 4) == [[0, 1, 2], [3, 4, 5, 6], [7, 8], [9]]
  assert waves(list(range(10)), bucket, 4, 100) == [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9]]


def test_identical_prompts_share_a_prefill_and_sample_as_if_alone(generator):
  sampling = Sampling(temperature=1.0)
  prompts = [PROMPTS[0]] * 4 + [PROMPTS[2]] * 4
  before = generator.stats["prompts_admitted"]
  together = generator.generate(prompts, 10, sampling, seed=5)
  assert generator.stats["prompts_admitted"] - before == 2  # one prefill per distinct prompt
  alone = [generator.generate([p], 10, sampling, keys=[(5, i)])[0]
           for i, p in enumerate(prompts)]
  assert [g.token_ids for g in together] == [g.token_ids for g in alone]
  assert len({tuple(g.token_ids) for g in together[:4]}) > 1  # the samples differ
  greedy = generator.generate([PROMPTS[0]] * 4, 10)
  assert all(g.token_ids == generator.generate(PROMPTS[:1], 10)[0].token_ids for g in greedy)


def test_freed_slots_take_waiting_prompts_and_every_row_is_as_if_alone(generator):
  rng = np.random.default_rng(0)
  prompts = [rng.integers(5, 200, rng.integers(2, 30)).tolist() for _ in range(10)]
  model = nnx.merge(generator.graphdef, generator.params)
  free = Generator(model, generator.tokenizer, batch_size=16).generate(prompts, 12)
  # An "EOS" the rows write at different steps, so rows finish at different times.
  first_steps = {}  # token -> the steps at which rows first write it
  for g in free:
    for token in set(g.token_ids):
      first_steps.setdefault(token, set()).add(g.token_ids.index(token))
  eos = max(first_steps, key=lambda t: len(first_steps[t] - {0}))
  reusing = Generator(model, generator.tokenizer, batch_size=2)
  reusing.eos_ids = (eos,)
  rows = reusing.generate(prompts, 12)
  assert len({len(g.token_ids) for g in rows}) > 2  # rows end at different steps
  assert reusing.stats["admissions"] > len(prompts) // 2  # slots were refilled one by one
  one_batch = Generator(model, generator.tokenizer, batch_size=16, reuse_slots=False)
  one_batch.eos_ids = (eos,)
  alone = [one_batch.generate([p], 12)[0] for p in prompts]
  assert [(g.token_ids, g.finish_reason) for g in rows] == [
      (g.token_ids, g.finish_reason) for g in alone]
  assert [g.token_ids for g in one_batch.generate(prompts, 12)] == [g.token_ids for g in rows]
