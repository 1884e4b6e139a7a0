"""Finding: host work (tokenising) ran outside the request deadline, unbounded, and checked
late: every pair was tokenised in both orders before the max_input_tokens check, a small
request waited 12.5 s behind a 2.3 MB body, and a 5 s deadline was answered after 10.6 s.
A slow tokenizer is simulated by delaying each call of the real encoder, so the timings
below do not depend on the machine."""
import concurrent.futures
import time


from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from tests.reliability.test_serve_hostile import PAIR, post, tiny_reward


def slow_encoder(reward, seconds_per_call=0.0):
  """Records how many prompts each call of the encoder tokenises, sleeping per call."""
  encoder, calls = reward.scorer.encoder, []
  encode_all = encoder.encode_all

  def recorded(orders):
    calls.append(len(orders))
    time.sleep(seconds_per_call)
    return encode_all(orders)
  encoder.encode_all = recorded
  return calls


def started(reward, limits):
  return serve_in_background(RewardServer(reward, limits))


def test_the_first_over_long_pair_stops_the_tokenising():
  reward = tiny_reward()
  calls = slow_encoder(reward)
  running = started(reward, Limits(max_input_tokens=200))
  try:
    pairs = [{**PAIR, "response_a": "Paris " * 400}] + [PAIR] * 255
    status, answer, _ = post(running.url, "/score", {"pairs": pairs})
    assert status == 413 and answer["error"].startswith("pairs[0]: ")
    assert sum(calls) == 1  # the first pair in one order; was all 512 prompts
  finally:
    running.stop()


def test_characters_alone_refuse_a_pair_that_cannot_fit_before_tokenising():
  reward = tiny_reward()
  calls = slow_encoder(reward)
  longest = max(len(token) for token in reward.tokenizer.get_vocab())
  running = started(reward, Limits(max_input_tokens=64, max_text_chars=10 ** 6))
  try:
    text = "Paris is the capital. " * (64 * longest // 22 + 10)
    status, answer, _ = post(running.url, "/score",
                             {"pairs": [PAIR, {**PAIR, "response_b": text}]})
    assert status == 413 and calls == []
    assert answer["error"].startswith("pairs[1]: at least ") and "characters" in \
        answer["error"] and "max_input_tokens=64" in answer["error"]
  finally:
    running.stop()


def test_a_deadline_is_kept_during_host_work_and_the_work_stops():
  reward = tiny_reward()
  calls = slow_encoder(reward, 0.25)  # 70 calls (35 chunks, two orders): 17 s of tokenising
  running = started(reward, Limits(request_timeout_s=1.0))
  try:
    begun = time.monotonic()
    status, answer, headers = post(running.url, "/score", {"pairs": [PAIR] * 256})
    assert status == 503 and "deadline" in answer["error"] and "Retry-After" in headers
    assert time.monotonic() - begun < 1.8  # was answered after all the work
    time.sleep(0.6)
    seen = len(calls)
    time.sleep(0.6)
    assert len(calls) == seen <= 12  # stopped at the next chunk, not after 64 calls
  finally:
    running.stop()


def test_a_full_host_queue_answers_503_then_serves():
  reward = tiny_reward()
  slow_encoder(reward, 0.6)
  running = started(reward, Limits(max_host_queue=2))
  try:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      first = [pool.submit(post, running.url, "/score", {"pairs": [PAIR]}) for _ in range(2)]
      time.sleep(0.2)
      status, answer, headers = post(running.url, "/score", {"pairs": [PAIR]})
      assert status == 503 and "max_host_queue=2" in answer["error"]
      assert int(headers["Retry-After"]) >= 1
      assert [f.result()[0] for f in first] == [200, 200]
    assert post(running.url, "/score", {"pairs": [PAIR]})[0] == 200
  finally:
    running.stop()


def test_work_whose_deadline_passed_in_the_queue_never_starts():
  reward = tiny_reward()
  calls = slow_encoder(reward, 1.5)
  running = started(reward, Limits(request_timeout_s=1.0))
  try:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      blocking = pool.submit(post, running.url, "/score", {"pairs": [PAIR]})
      time.sleep(0.2)
      waiting = pool.submit(post, running.url, "/score", {"pairs": [PAIR] * 2})
      assert blocking.result()[0] == 503 and waiting.result()[0] == 503
    time.sleep(1.0)
    assert calls == [1]  # only the first request's first order ran
  finally:
    running.stop()


def test_the_character_bound_never_exceeds_the_real_token_count():
  import random

  from gram_jax.text.tokenizer import longest_token_chars, normalized_chars
  tokenizer = tiny_reward().tokenizer
  longest = longest_token_chars(tokenizer)
  pieces = [" ", "    ", "\n", "Paris", "e\u0301", "\u1100\u1161\u11a8", "==", "ab", "\t\t"]
  rng = random.Random(0)
  for _ in range(300):
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert normalized_chars(tokenizer, text) <= tokens * longest, text
