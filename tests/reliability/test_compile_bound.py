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
