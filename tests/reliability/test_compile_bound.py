"""Findings: the documented verdict readout (max_tokens=1, logprobs, a stop string of
several tokens) was a 500; and every new chat temperature, top_p or stop string compiled the
generator again on the device thread (~10 s with the tiny model, while /score waited), and
the jit cache grew without bound. Sampling settings and stops are now traced inputs of
fixed shape."""
import contextlib

import jax
import pytest

from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from tests.reliability.test_serve_hostile import post, tiny_reward

CHAT = {"messages": [{"role": "user", "content": "Which is better?"}], "max_tokens": 4}


@contextlib.contextmanager
def counted_compiles():
  """Counts XLA compilations (jax's own event, not our shape log) inside the block."""
  count = [0]

  def listen(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      count[0] += 1
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture(scope="module")
def server():
  running = serve_in_background(RewardServer(tiny_reward(), Limits()))
  yield running
  running.stop()


def test_new_sampling_settings_and_stop_strings_compile_nothing(server):
  for warm in ({"temperature": 0.0}, {"temperature": 1.0, "stop": ["Paris"]}):
    assert post(server.url, "/v1/chat/completions", {**CHAT, **warm})[0] == 200
  settings = [{"temperature": t, "top_p": p, "stop": stop}
              for t, p, stop in [(0.3, 1.0, []), (0.7, 0.9, ["A"]), (1.3, 0.5, ["B", "x y"]),
                                 (1.9, 0.99, ["is", "the", "capital", "?"]),
                                 (0.0, 1.0, ["Which"])]]
  with counted_compiles() as compiles:
    for setting in settings:
      status, answer, _ = post(server.url, "/v1/chat/completions", {**CHAT, **setting})
      assert status == 200, answer
  assert compiles[0] == 0


def test_the_compiled_shapes_are_logged_and_bounded(server):
  generator = server.listening.server.chat.generator
  assert post(server.url, "/v1/chat/completions", {**CHAT, "temperature": 0.1})[0] == 200
  before = len(generator.compiled_shapes)
  assert before >= 1
  for t in (0.2, 0.4, 0.6, 0.8):
    assert post(server.url, "/v1/chat/completions", {**CHAT, "temperature": t})[0] == 200
  assert len(generator.compiled_shapes) == before


def test_the_documented_verdict_readout_with_a_long_stop_string_is_answered(server):
  # max_tokens=1 with logprobs and a stop string of several tokens: a 500 (TypeError) before.
  tokenizer = server.listening.server.reward.tokenizer
  stop = "Paris is the capital"
  assert len(tokenizer.encode(stop, add_special_tokens=False)) >= 2
  status, answer, _ = post(server.url, "/v1/chat/completions", {
      **CHAT, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 2,
      "stop": [stop]})
  assert status == 200, answer
  choice = answer["choices"][0]
  assert len(choice["logprobs"]["content"]) == 1
  assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_top_logprobs_share_one_compiled_shape(server):
  """top_logprobs was a static argument: 20 shapes. Top-20 is taken always and sliced."""
  readout = {**CHAT, "max_tokens": 1, "temperature": 0.0, "logprobs": True}
  assert post(server.url, "/v1/chat/completions", {**readout, "top_logprobs": 1})[0] == 200
  with counted_compiles() as compiles:
    for top in (0, 2, 5, 20):
      status, answer, _ = post(server.url, "/v1/chat/completions", {**readout,
                                                                    "top_logprobs": top})
      assert status == 200, answer
      assert len(answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == top
  assert compiles[0] == 0


def test_new_shapes_past_the_rate_are_503_and_every_compile_is_counted():
  """Each new chat shape stalled /score 8-22 s; a client could make ~2,100 of them."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(
      max_new_shapes_per_minute=2)))
  try:
    greedy = {**CHAT, "temperature": 0.0}
    for tokens in (1, 2):
      assert post(running.url, "/v1/chat/completions", {**greedy, "max_tokens": tokens})[0] \
          == 200
    status, answer, headers = post(running.url, "/v1/chat/completions",
                                   {**greedy, "max_tokens": 4})
    assert status == 503 and "max_new_shapes_per_minute=2" in answer["error"]
    assert int(headers["Retry-After"]) >= 1
    assert post(running.url, "/v1/chat/completions", {**greedy, "max_tokens": 2})[0] == 200
    assert post(running.url, "/score", {"pairs": [{"prompt": "q", "response_a": "a",
                                                   "response_b": "b"}]})[0] == 200
    import urllib.request
    metrics = urllib.request.urlopen(running.url + "/metrics", timeout=10).read().decode()
    assert 'gram_compiles_refused_total{kind="generate"} 1.0' in metrics
    compiles = float(next(line.split()[1] for line in metrics.splitlines()
                          if line.startswith("gram_compiles_total ")))
    assert compiles >= 2  # the two chat shapes at least, and whatever scoring compiled
  finally:
    running.stop()
