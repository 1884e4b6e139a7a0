"""RewardModel scores equal the official PyTorch scorer; reasoning readouts and voting@k;
the verdict loss."""
import json

import numpy as np
import pytest
import torch

import gram_jax
from gram_jax import GramError, parallel
from gram_jax.inference import ranking
from gram_jax.inference import batching
from gram_jax.inference.batching import bucket_length
from gram_jax.inference.generate import Sampling
from gram_jax.inference.reasoning import Judgment, PairJudgment, RationaleJudge
from gram_jax.inference.reward import RewardModel, judge_settings
from gram_jax.judge_card import RELEASE, Reasoning, read_judge_card, write_judge_card
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from gram_jax.training import objectives
from tests.helpers import hf_fixtures, official

PAIRS = [
    ("What is the capital of France?", "Paris is the capital.", "The answer is 4."),
    ("What is 2 + 2?", "The answer is 4.", "Paris."),
    ("Name a fruit.", "A", "Response A is better than response B. " * 3),
    ("Which is larger?", "Paris is the capital of France and the answer is 4.", "B"),
    ("Q?", "Response A", "Response B is better than response A, the answer is 4."),
]


@pytest.fixture(scope="module", params=["qwen3", "llama3_tied", "gemma3"])
def model_dir(request, tmp_path_factory):
  path = str(tmp_path_factory.mktemp(request.param))
  torch_model = hf_fixtures.make_hf_model(request.param, path, with_tokenizer=True)
  return path, torch_model


def test_score_batch_matches_official_scorer(model_dir):
  path, torch_model = model_dir
  reward = RewardModel.from_pretrained(path, batch_size=4)
  got = reward.score_batch(PAIRS)
  expected = official.official_scores(torch_model, reward.tokenizer, PAIRS)
  np.testing.assert_allclose(got, expected, atol=1e-4)
  assert np.abs(got[:, 0] - got[:, 1]).max() > 1e-3  # the scores are not all ties
  np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
  assert reward.score(*PAIRS[0]) == pytest.approx(tuple(got[0]), abs=1e-6)


def test_scores_on_a_mesh_equal_single_device(model_dir):
  path, _ = model_dir
  single = RewardModel.from_pretrained(path, batch_size=4).score_batch(PAIRS)
  mesh = parallel.make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
  sharded = RewardModel.from_pretrained(path, mesh=mesh, batch_size=4).score_batch(PAIRS)
  np.testing.assert_allclose(sharded, single, atol=1e-5)


def test_trimming_keeps_the_verdict_position_and_counts(model_dir):
  path, _ = model_dir
  reward = RewardModel.from_pretrained(path, batch_size=4, max_len=760)
  long = "Paris is the capital of France. " * 200
  scores, trimmed = reward.score_pairs([("Question?", long, "Short."), PAIRS[0]])
  assert trimmed.tolist() == [True, False] and np.isfinite(scores).all()
  ids, trimmed = reward.encoder("Question?", long, "Short.")
  assert trimmed and len(ids) <= 760
  text = reward.tokenizer.decode(ids)
  assert text.endswith("[The End of Assistant B's Answer]\n\n#Preferred: <|im_end|>\n"
                       "<|im_start|>assistant\n")
  # Both responses shrink in proportion to their lengths; neither disappears.
  assert "[The Start of Assistant B's Answer]\nS" in text
  assert "[The End of Assistant A's Answer]" in text and "Paris is the capital" in text


def test_every_rank_method_runs_on_the_model_scores(model_dir):
  path, _ = model_dir
  reward = RewardModel.from_pretrained(path, batch_size=8)
  responses = ["Paris.", "The answer is 4.", "Response A is better.", "B", "Paris is the capital."]
  prompt = "What is the capital of France?"
  for method in ranking.METHODS:
    result = reward.rank(prompt, responses, method=method)
    assert 0 <= result.best < 5 and result.comparisons == (10 if method in (
        "round_robin", "bradley_terry") else 4)
  # The round robin counts the model's wins: check one game's outcome by hand.
  wins = reward.rank(prompt, responses[:2], method="round_robin").scores
  first, second = reward.score(prompt, responses[0], responses[1])
  assert wins == ([1.0, 0.0] if first > second else [0.0, 1.0])


def test_small_calls_run_small_batches(model_dir, monkeypatch):
  """One pair = two prompts = a 2-row device batch, not batch_size rows of padding; the
  scores equal those of the pair in a full batch. After warm_up (a server) calls run the
  executables it compiled ahead of time, small ones still as small batches."""
  path, _ = model_dir
  reward = RewardModel.from_pretrained(path, batch_size=4, max_len=128,
                                       template=templates.COMPACT_JUDGE_PROMPT)
  in_full_batch = reward.score_batch(PAIRS * 2)[:1]
  widths = []
  pad = batching.left_pad
  monkeypatch.setattr("gram_jax.inference.scorer.left_pad",
                      lambda rows, batch, *a: widths.append(batch) or pad(rows, batch, *a))
  np.testing.assert_allclose(reward.score_batch(PAIRS[:1]), in_full_batch, atol=1e-6)
  assert widths and max(widths) == 2, widths
  assert reward.warm_up() == 3 * 4  # rows 1, 2, 4 x widths 16, 32, 64, 128

  def no_compile(*args):
    raise AssertionError("a warmed shape was traced again")

  monkeypatch.setattr("gram_jax.inference.scorer._label_probs", no_compile)
  widths.clear()
  np.testing.assert_allclose(reward.score_batch(PAIRS[:1]), in_full_batch, atol=1e-6)
  assert widths == [2], widths
  np.testing.assert_allclose(reward.score_batch(PAIRS * 2)[:1], in_full_batch, atol=1e-6)


def test_bucket_rows():
  assert [batching.bucket_rows(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
  assert [batching.bucket_rows(n, 16, multiple=8) for n in (1, 9)] == [8, 16]
  assert batching.bucket_rows(3, 12, multiple=4) == 4


def test_bucket_lengths():
  assert [bucket_length(n, 2048) for n in (1, 16, 17, 100, 256, 257, 700, 2000, 2048)] == [
      16, 16, 32, 128, 256, 512, 768, 2048, 2048]
  assert bucket_length(900, 1000) == 1000


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.1, 0.15])
def test_verdict_loss_equals_torch_label_smoothed_cross_entropy(epsilon):
  rng = np.random.RandomState(0)
  logits = rng.randn(64, 2).astype(np.float32) * 3
  labels = rng.randint(0, 2, 64)
  ours = np.asarray(objectives.label_smoothed_cross_entropy(logits, labels, epsilon))
  theirs = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels),
                                             label_smoothing=epsilon, reduction="none").numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_label_smoothing_is_bradley_terry_plus_margin_penalty():
  """Paper identity: -(1-e) log s(D) - e log s(-D) == -log s(D) + e D, D = z_w - z_l, and
  official epsilon = 2 x paper epsilon (PyTorch spreads it over both classes)."""
  rng = np.random.RandomState(1)
  z = rng.randn(1000, 2).astype(np.float64) * 4
  labels = rng.randint(0, 2, 1000)
  delta = z[np.arange(1000), labels] - z[np.arange(1000), 1 - labels]
  log_sigmoid = lambda x: -np.logaddexp(0, -x)
  for paper_epsilon in (0.0, 0.025, 0.05, 0.1):
    bradley_terry_plus_penalty = -log_sigmoid(delta) + paper_epsilon * delta
    smoothed = np.asarray(objectives.label_smoothed_cross_entropy(
        z.astype(np.float32), labels, 2 * paper_epsilon))
    np.testing.assert_allclose(smoothed, bradley_terry_plus_penalty, rtol=2e-5, atol=2e-5)
  # The minimum over the margin sits at log((1 - e) / e).
  margins = np.linspace(-10, 10, 200001)
  loss = -log_sigmoid(margins) + 0.05 * margins
  assert margins[np.argmin(loss)] == pytest.approx(np.log(0.95 / 0.05), abs=1e-3)


@pytest.fixture(scope="module")
def reasoning_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("rr"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  write_judge_card(path, templates.COMPACT_RR_PROMPT, ("A", "B"), Reasoning(max_new_tokens=6))
  return path


def _direct_judge(path):
  return RationaleJudge(gram_jax.load_pretrained(path), tok.load_tokenizer(path),
                        templates.COMPACT_RR_PROMPT, batch_size=4, max_len=256, max_new_tokens=6)


def test_reasoning_judge_reads_both_orders(reasoning_dir):
  reward = RewardModel.from_pretrained(reasoning_dir, max_len=256, batch_size=4)
  assert reward.reasoning == Reasoning(max_new_tokens=6)
  direct = _direct_judge(reasoning_dir).judge_batch(PAIRS[:3])
  judged = reward.judge_batch(PAIRS[:3])
  assert [j.judgments for j in judged] == [j.judgments for j in direct]
  for j in judged:
    first, second = j.judgments
    assert not first.swapped and second.swapped
    # P(A)/P(B) after each rationale, averaged over both orders in the pair's orientation.
    expected = ((first.probs[0] + second.probs[1]) / 2, (first.probs[1] + second.probs[0]) / 2)
    assert j.probability_scores == pytest.approx(expected, abs=1e-6)
  # The published readout: vote shares of the parsed verdicts.
  expected = np.array([j.vote.scores() for j in judged])
  np.testing.assert_allclose(reward.score_batch(PAIRS[:3]), expected)
  probability = RewardModel.from_pretrained(reasoning_dir, max_len=256, batch_size=4,
                                            reasoning=Reasoning(max_new_tokens=6,
                                                                score="probability"))
  np.testing.assert_allclose(probability.score_batch(PAIRS[:3]),
                             [j.probability_scores for j in judged], atol=1e-6)


def test_the_release_protocols_probability_reward_averages_both_orders(reasoning_dir):
  """SPEC §6: the continuous reward is P(A)/P(B) after each rationale averaged over both
  orders, also when the verdict protocol shows one order (the release's)."""
  one_order = Reasoning(max_new_tokens=6, votes=1, orders=1)
  reward = RewardModel.from_pretrained(reasoning_dir, max_len=256, batch_size=4,
                                       reasoning=one_order)
  direct = _direct_judge(reasoning_dir)
  shown = direct.judge_batch(PAIRS[:3], orders=1)
  swapped = direct.judge_batch([(p, b, a) for p, a, b in PAIRS[:3]], orders=1)
  expected = [((x.judgments[0].probs[0] + y.judgments[0].probs[1]) / 2,
               (x.judgments[0].probs[1] + y.judgments[0].probs[0]) / 2)
              for x, y in zip(shown, swapped)]
  scores, _ = reward.score_pairs(PAIRS[:3], readout="probability")
  np.testing.assert_allclose(scores, expected, atol=1e-6)
  rows = reward.prepare(PAIRS[:3], readout="probability") + reward.prepare(PAIRS[:3])
  served, _ = reward.score_prepared(rows)  # what /get_reward and /group_reward return
  np.testing.assert_allclose(served[:3], expected, atol=1e-6)
  # The verdict readout keeps the release protocol: one order, the vote of its one judgment.
  np.testing.assert_allclose(served[3:], [j.vote.scores() for j in shown])
  assert [len(j.judgments) for j in reward.judge_batch(PAIRS[:3])] == [1, 1, 1]


def test_voting_at_k_samples_half_the_judgments_in_each_order(reasoning_dir):
  voting = Reasoning(max_new_tokens=6, temperature=1.0, votes=6)
  reward = RewardModel.from_pretrained(reasoning_dir, max_len=256, batch_size=4,
                                       reasoning=voting)
  judged = reward.judge_batch(PAIRS, seed=5)
  for j in judged:
    assert [x.swapped for x in j.judgments] == [False] * 3 + [True] * 3
    picks = [x.pick(("A", "B")) for x in j.judgments]
    assert (j.vote.for_a, j.vote.for_b, j.vote.abstained) == (
        picks.count(0), picks.count(1), picks.count(None))
  # Samples follow (seed, pair, order, sample): pair 3 alone, as item 3, gets the same text.
  alone = _direct_judge(reasoning_dir).judge_batch(
      PAIRS[3:4], Sampling(temperature=1.0), seed=5, first_index=3, samples=3)[0]
  assert [x.reply for x in alone.judgments] == [x.reply for x in judged[3].judgments]
  assert len({x.reply for j in judged for x in j.judgments}) > 3  # sampling varies them


def test_the_release_protocol_judges_k_times_in_the_given_order(reasoning_dir):
  release = Reasoning(max_new_tokens=6, temperature=1.0, votes=3, orders=1)
  reward = RewardModel.from_pretrained(reasoning_dir, max_len=256, batch_size=4,
                                       reasoning=release)
  judged = reward.judge_batch(PAIRS, seed=5)
  alone = _direct_judge(reasoning_dir).judge_batch(
      PAIRS[2:3], Sampling(temperature=1.0), seed=5, first_index=2, samples=3, orders=1)[0]
  assert [x.reply for x in alone.judgments] == [x.reply for x in judged[2].judgments]
  for j in judged:
    assert len(j.judgments) == 3 and not any(x.swapped for x in j.judgments)
    assert j.consistent is None  # one order: position consistency is not measured
    picks = [x.pick(("A", "B")) for x in j.judgments]
    if picks.count(0) != picks.count(1):
      assert j.winner == (0 if picks.count(0) > picks.count(1) else 1)


def _verdict(letter, is_swapped=False):
  return Judgment(is_swapped, "", "", letter, (0.5, 0.5))


def test_a_tie_goes_to_the_response_shown_first_with_one_order_only():
  tie = (_verdict("A"), _verdict("B"), _verdict(None), _verdict(None))
  assert PairJudgment(tie, orders=1).winner == 0  # the release: max(set(v), key=v.count)
  assert PairJudgment(tie, orders=1).flipped().winner == 1  # shown first = response_b
  assert PairJudgment(tie, orders=2).winner is None  # both orders: a tie is no verdict
  assert PairJudgment((_verdict(None),), orders=1).winner is None  # nobody voted
  assert PairJudgment((_verdict("B"), _verdict("B"), _verdict("A")), orders=1).winner == 1


def test_reasoning_settings_are_checked():
  with pytest.raises(GramError, match="needs sampling"):
    Reasoning(votes=4)
  with pytest.raises(GramError, match="multiple of orders"):
    Reasoning(votes=3)
  with pytest.raises(GramError, match="orders must be 1"):
    Reasoning(orders=3)
  assert Reasoning(votes=1, orders=1).samples_per_order == 1
  assert RELEASE.orders == 1 and RELEASE.prompt_len() == 8192 - 2048
  with pytest.raises(GramError, match="score"):
    Reasoning(score="mean")
  assert (RELEASE.temperature, RELEASE.max_new_tokens) == (0.75, 2048)


def test_judge_of_a_verdict_model_reads_each_order(model_dir):
  path, _ = model_dir
  reward = RewardModel.from_pretrained(path, max_len=2048, batch_size=4)
  first, second = reward.scorer.order_probs(PAIRS)[:2]
  for judgment, f, s, (score_a, score_b) in zip(reward.judge_batch(PAIRS), first, second,
                                                 reward.score_batch(PAIRS)):
    assert judgment.rationales == ("", "")
    assert judgment.verdicts == ("A" if f[0] > f[1] else "B", "A" if s[0] > s[1] else "B")
    assert judgment.consistent == ((f[0] > f[1]) == (s[1] > s[0]))
    assert (judgment.score_a, judgment.score_b) == pytest.approx((score_a, score_b))


def test_a_broken_judge_card_is_named(tmp_path):
  (tmp_path / "judge.json").write_text('{"template": "x", "reasoning": {"nope": 1}}')
  with pytest.raises(GramError, match="judge.json: not a valid judge card"):
    read_judge_card(str(tmp_path))


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
  """A model from elsewhere: no judge card (a released GRAM-RR checkpoint looks so)."""
  path = str(tmp_path_factory.mktemp("no_card"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return path


def test_a_reasoning_judge_gets_the_gram_rr_prompt_unless_one_is_named(plain_dir):
  released = RewardModel.from_pretrained(plain_dir, reasoning=RELEASE)
  assert released.encoder.template == templates.GRAM_RR_PROMPT
  assert released.max_len == 8192 - 2048  # the release context less its reply
  assert "prompt gram_rr" in released.describe() and "orders=1" in released.describe()
  named = RewardModel.from_pretrained(plain_dir, reasoning=RELEASE, template="compact_rr")
  assert named.encoder.template == templates.COMPACT_RR_PROMPT
  verdict = RewardModel.from_pretrained(plain_dir)
  assert verdict.encoder.template == templates.GRAM_JUDGE_PROMPT and verdict.reasoning is None


def test_a_verdict_prompt_with_a_reasoning_judge_is_an_error_naming_both(plain_dir, tmp_path):
  with pytest.raises(GramError, match=r"config.template.judge=gram is a verdict-only prompt, "
                                      r"but config.reasoning.preset=release makes this a "
                                      r"reasoning judge"):
    RewardModel.from_pretrained(plain_dir, reasoning=RELEASE, template="gram",
                                template_field="config.template.judge",
                                reasoning_field="config.reasoning.preset=release")
  with pytest.raises(GramError, match="verdict-only prompt"):
    RewardModel(gram_jax.load_pretrained(plain_dir), tok.load_tokenizer(plain_dir),
                template=templates.GRAM_JUDGE_PROMPT + "\n", reasoning=Reasoning())
  card_dir = str(tmp_path / "verdict_card")  # a GRAM judge's card, read with reasoning on
  hf_fixtures.make_hf_model("qwen3", card_dir, with_tokenizer=True)
  write_judge_card(card_dir, templates.COMPACT_JUDGE_PROMPT, ("A", "B"), None)
  with pytest.raises(GramError, match=r"the judge card's template \(compact\) is a "
                                      r"verdict-only prompt, but reasoning makes"):
    RewardModel.from_pretrained(card_dir, reasoning=RELEASE)
  with pytest.raises(GramError, match=r"template=gram_rr asks for a rationale first"):
    RewardModel.from_pretrained(plain_dir, template="gram_rr", reasoning=None)


def test_the_judge_card_records_the_chat_template_and_readers_use_it(plain_dir, tmp_path):
  path = str(tmp_path / "chat")
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  chat = ("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}"
          "{% if add_generation_prompt %}=>{% endif %}")
  write_judge_card(path, templates.COMPACT_JUDGE_PROMPT, ("A", "B"), None, chat)
  reward = RewardModel.from_pretrained(path)
  assert reward.encoder.chat_template == chat
  assert reward.encoder.text("q", "a", "b").startswith("<<") and \
      reward.encoder.text("q", "a", "b").endswith(">>=>")


def test_cards_written_before_orders_existed_keep_their_meaning(tmp_path):
  (tmp_path / "judge.json").write_text(json.dumps({
      "template": "t", "labels": ["A", "B"],
      "reasoning": {"rationale_format": "answer_tag", "max_new_tokens": 8, "temperature": 0.7,
                    "votes": 3, "score": "verdict"}}))  # then: 3 judgments per order
  reasoning = read_judge_card(str(tmp_path))["reasoning"]
  assert (reasoning.votes, reasoning.orders, reasoning.samples_per_order) == (6, 2, 3)


def test_what_the_caller_names_wins_over_the_judge_card_and_the_card_over_defaults():
  reasoning = Reasoning(votes=1, orders=1)
  card = {"template": templates.GRAM_RR_PROMPT, "labels": ["X", "Y"], "chat_template": "{{x}}",
          "reasoning": reasoning}
  assert judge_settings({}) == {"template": templates.GRAM_JUDGE_PROMPT, "labels": ("A", "B"),
                                "chat_template": None, "reasoning": None}
  assert judge_settings(card) == {"template": templates.GRAM_RR_PROMPT, "labels": ("X", "Y"),
                                  "chat_template": "{{x}}", "reasoning": reasoning}
  named = judge_settings(card, template="gram", labels=("P", "Q"), chat_template="{{y}}",
                         reasoning=None)  # None names a verdict judge
  assert named == {"template": templates.GRAM_JUDGE_PROMPT, "labels": ("P", "Q"),
                   "chat_template": "{{y}}", "reasoning": None}
  assert judge_settings(card, template=None, labels=None, chat_template=None) == \
      judge_settings(card)  # None names nothing for the other settings
