"""The reward server under overload and hostile clients, over real sockets: each test makes
the attack of the serving review, then checks the answer. A tiny model keeps it fast; a
`slow` device (each batch sleeps) makes queues form."""
import concurrent.futures
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from flax import nnx

from gram_jax import GramError
from gram_jax.serving.request_parsing import (Limits, RequestError, parse_chat_request,
                                                 parse_group_request)
from gram_jax.inference.reward import RewardModel
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from gram_jax.models.config import tiny_config
from gram_jax.models.decoder import Decoder
from gram_jax.stages import serve as serve_stage
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok

PAIR = {"prompt": "Capital?", "response_a": "Paris", "response_b": "A"}


def tiny_reward(max_len=512):
  tokenizer = tok.train_bpe_tokenizer(["Which answer is better, A or B? Paris is the capital."]
                                      * 4, vocab_size=128)
  model = Decoder(tiny_config("qwen3", vocab_size=len(tokenizer), hidden_size=32,
                              intermediate_size=64, num_heads=4, num_kv_heads=2, head_dim=8,
                              num_layers=1), nnx.Rngs(0))
  return RewardModel(model, tokenizer, max_len=max_len, batch_size=4,
                     template=templates.COMPACT_JUDGE_PROMPT)


def slowed(reward, seconds):
  score, batches = reward.score_prepared, []

  def slow(rows):
    time.sleep(seconds)
    batches.append(len(rows))
    return score(rows)
  reward.score_prepared = slow
  return batches


def post(url, path, body, headers=None, timeout=60):
  request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json",
                                            **(headers or {})})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      return response.status, json.loads(response.read()), dict(response.headers)
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read()), dict(e.headers)


def raw_exchange(port, data: bytes, wait=5.0) -> bytes:
  with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
    s.sendall(data)
    chunks = []
    try:
      while chunk := s.recv(65536):
        chunks.append(chunk)
    except socket.timeout:
      pass
    return b"".join(chunks)


def idle_sockets(port: int, count: int) -> list[socket.socket]:
  """`count` sockets that never send a byte, returned once the server has accepted all of
  them: the last one's first byte (a 503 past the cap) or its close has arrived. Eviction
  counts silence from the server's accept, which a busy machine delays past the client's
  connect."""
  sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
  sockets[-1].settimeout(30)
  sockets[-1].recv(1, socket.MSG_PEEK)
  sockets[-1].settimeout(None)
  return sockets


@pytest.fixture(scope="module")
def keyed():
  running = serve_in_background(RewardServer(tiny_reward(), Limits(), api_key=" key\n"))
  yield running
  running.stop()


@pytest.mark.parametrize("header,status", [
    ({"Authorization": "Bearer key"}, 200), ({"Authorization": "bearer key"}, 200),
    ({"Authorization": "BEARER key "}, 200), ({"X-API-Key": "key"}, 200),
    ({"Authorization": "Basic cm06a2V5"}, 200),  # rm:key, as aiohttp sends http://rm:key@
    ({"Authorization": "Basic cm06d3Jvbmc="}, 401), ({"Authorization": "Basic !!"}, 401),
    ({"Authorization": "Bearer"}, 401), ({}, 401), ({"Authorization": "Bearer key2"}, 401)])
def test_api_key_forms(keyed, header, status):
  assert post(keyed.url, "/score", {"pairs": [PAIR]}, header)[0] == status


def test_a_non_utf8_authorization_header_is_a_401_not_a_500(keyed):
  answer = raw_exchange(keyed.port, b"POST /score HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n"
                        b"Connection: close\r\n\r\n{}")
  assert answer.startswith(b"HTTP/1.1 401")


def test_metrics_need_the_key_health_does_not(keyed):
  with pytest.raises(urllib.error.HTTPError) as refused:
    urllib.request.urlopen(keyed.url + "/metrics", timeout=30)
  assert refused.value.code == 401
  request = urllib.request.Request(keyed.url + "/metrics", headers={"Authorization":
                                                                    "Bearer key"})
  assert urllib.request.urlopen(request, timeout=30).status == 200
  assert urllib.request.urlopen(keyed.url + "/health", timeout=30).status == 200


def test_exposed_address_without_a_key_is_refused(tmp_path):
  with pytest.raises(GramError, match="serve.host='0.0.0.0' is reachable"):
    serve_stage.check_exposure("0.0.0.0", "")
  serve_stage.check_exposure("0.0.0.0", "key")
  serve_stage.check_exposure("127.0.0.1", "")
  serve_stage.check_exposure("localhost", "")
  (tmp_path / "key").write_text("  secret \n")
  config = serve_stage_config(api_key_file=str(tmp_path / "key"))
  assert serve_stage.api_key(config) == "secret"
  assert serve_stage.api_key(serve_stage_config(api_key_env="GRAM_JAX_TEST_UNSET")) == ""


def serve_stage_config(**overrides):
  from configs import serve as serve_config
  config = serve_config.get_config().serve
  config.update(overrides)
  return config


def test_overload_answers_503_with_retry_after_and_serves_right_after():
  reward = tiny_reward()
  slowed(reward, 0.2)
  running = serve_in_background(RewardServer(reward, Limits(max_queue_pairs=4,
                                                            max_batch_pairs=2)))
  try:
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
      answers = list(pool.map(lambda _: post(running.url, "/score", {"pairs": [PAIR] * 2}),
                              range(12)))
    refused = [a for a in answers if a[0] == 503]
    assert refused and all(1 <= int(a[2]["Retry-After"]) <= 60 for a in refused)
    assert all("max_queue_pairs=4" in a[1]["error"] for a in refused)
    assert all(a[0] in (200, 503) for a in answers)
    assert post(running.url, "/score", {"pairs": [PAIR]})[0] == 200
  finally:
    running.stop()


def test_a_request_past_its_deadline_is_answered_503_and_not_computed():
  reward = tiny_reward()
  batches = slowed(reward, 0.6)
  running = serve_in_background(RewardServer(reward, Limits(request_timeout_s=0.3,
                                                            max_batch_pairs=1)))
  try:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
      started = time.monotonic()
      answers = list(pool.map(lambda _: post(running.url, "/score", {"pairs": [PAIR]}),
                              range(3)))
      waited = time.monotonic() - started
    assert [a[0] for a in answers] == [503] * 3 and waited < 0.6 + 0.5
    assert all("deadline" in a[1]["error"] and "Retry-After" in a[2] for a in answers)
    time.sleep(1.5)
    assert len(batches) == 1  # the one batch already on the device; the others were dropped
  finally:
    running.stop()


def test_work_of_a_client_that_left_is_dropped():
  reward = tiny_reward()
  batches = slowed(reward, 0.5)
  server = RewardServer(reward, Limits(max_batch_pairs=1))
  running = serve_in_background(server)
  try:
    busy = threading.Thread(target=post, args=(running.url, "/score", {"pairs": [PAIR]}))
    busy.start()
    time.sleep(0.1)
    body = json.dumps({"pairs": [PAIR] * 3}).encode()
    with socket.create_connection(("127.0.0.1", running.port)) as s:  # sends, then leaves
      s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
      time.sleep(0.1)
    busy.join()
    time.sleep(1.0)
    assert batches == [1]  # the abandoned three pairs never reached the device
    assert server.metrics.dropped.labels("client_gone")._value.get() == 1
    assert post(running.url, "/score", {"pairs": [PAIR]})[0] == 200
  finally:
    running.stop()


def test_health_fails_when_the_batcher_has_died():
  server = RewardServer(tiny_reward())
  running = serve_in_background(server)
  try:
    running.loop.call_soon_threadsafe(server.batcher_task.cancel)
    time.sleep(0.2)
    with pytest.raises(urllib.error.HTTPError) as failed:
      urllib.request.urlopen(running.url + "/health", timeout=30)
    assert failed.value.code == 503
    assert json.loads(failed.value.read())["status"] == "batcher stopped"
  finally:
    running.stop()


def test_references_are_generated_once_per_prompt_checked_first_and_bounded():
  calls = []

  def reference(prompts):
    calls.append(list(prompts))
    time.sleep(0.3)
    return [f"reference to {p}" for p in prompts], [False] * len(prompts)
  server = RewardServer(tiny_reward(), Limits(reference_cache=2, max_input_tokens=300),
                        reference=reference)
  running = serve_in_background(server)
  try:
    body = {"query": ["Capital? Paris"], "prompts": ["Capital?"], "labels": [None]}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      answers = list(pool.map(lambda _: post(running.url, "/get_reward", body), range(4)))
    assert [a[0] for a in answers] == [200] * 4 and calls == [["Capital?"]]
    too_long = {"query": ["Q? " + "Paris " * 200], "prompts": ["Q?"], "labels": [""]}
    status, answer, _ = post(running.url, "/get_reward", too_long)
    assert status == 413 and "max_input_tokens=300" in answer["error"]
    assert len(calls) == 1  # refused before any reference was generated
    for prompt in ("One?", "Two?", "Three?"):
      post(running.url, "/get_reward", {"query": [prompt + " A"], "prompts": [prompt]})
    assert list(server.references) == ["Two?", "Three?"]
  finally:
    running.stop()


def test_a_trimmed_pair_says_so():
  running = serve_in_background(RewardServer(tiny_reward(max_len=256), Limits()))
  try:
    status, body, _ = post(running.url, "/score", {"pairs": [
        PAIR, {"prompt": "Capital?", "response_a": "Paris " * 100, "response_b": "A"}]})
    assert status == 200 and body["trimmed"] == [False, True]
  finally:
    running.stop()


@pytest.mark.parametrize("field", ["n", "seed", "max_tokens", "top_logprobs", "temperature"])
def test_a_400_digit_integer_is_a_400_naming_the_field_not_a_500(field):
  body = {"messages": [{"role": "user", "content": "hi"}], field: 10 ** 400}
  with pytest.raises(RequestError) as error:
    parse_chat_request(body, Limits())
  assert error.value.status == 400 and str(error.value).startswith(f"{field}: expected ")
  assert "(401 characters)" in str(error.value)  # the number is not echoed whole


def test_a_400_digit_opponents_count_is_a_400():
  body = {"prompt": "q", "completions": ["a", "b", "c"], "method": "neighbours",
          "opponents": -10 ** 400}
  with pytest.raises(RequestError, match="^opponents: expected int") as error:
    parse_group_request(body, Limits())
  assert error.value.status == 400


@pytest.mark.parametrize("header", [b"Authorization: Bearer key\x00\x7f\r\n",
                                    b"Authorization: Bearer key" + b"k" * 9000 + b"\r\n"])
def test_a_malformed_request_logs_one_line_and_never_the_key(keyed, header, caplog):
  with caplog.at_level(logging.DEBUG):
    answer = raw_exchange(keyed.port, b"POST /score HTTP/1.1\r\nHost: x\r\n" + header +
                          b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    time.sleep(0.2)  # the server thread logs after answering
  assert answer.split(b" ")[1] == b"400"
  records = [r for r in caplog.records if r.name == "gram_jax.serve.requests"]
  assert len(records) == 1 and records[0].exc_info is None
  assert records[0].getMessage().startswith("refused a malformed request (")
  assert "Bearer" not in caplog.text and "key" not in caplog.text.replace("API key", "")


@pytest.fixture(scope="module")
def keyless():
  running = serve_in_background(RewardServer(tiny_reward(), Limits()))
  yield running
  running.stop()


@pytest.mark.parametrize("headers,status,says", [
    ({"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain'"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json bodies"),
    ({"Host": "rebound.example:8000"}, 403, "Host 'rebound.example:8000'"),
    ({"Origin": "https://evil.example"}, 403, "Origin 'https://evil.example'"),
    ({"Origin": "http://localhost:3000"}, 200, None),
    ({"Host": "[::1]:8000", "Origin": "http://127.0.0.1:8000"}, 200, None)])
def test_a_keyless_server_answers_only_same_host_json_requests(keyless, headers, status, says):
  """What a web page the operator opens can send without a preflight (text/plain, a form)
  and what DNS rebinding sends (a foreign Host) is refused; local JSON clients are not."""
  code, answer, _ = post(keyless.url, "/score", {"pairs": [PAIR]}, headers)
  assert code == status
  if says:
    assert says in answer["error"]


def test_a_keyed_server_needs_only_its_key(keyed):
  headers = {"Authorization": "Bearer key", "Host": "judge.internal:8000",
             "Content-Type": "text/plain"}
  assert post(keyed.url, "/score", {"pairs": [PAIR]}, headers)[0] == 200


def test_garbage_under_content_encoding_gzip_is_a_400_in_one_line(keyless, caplog):
  """It was a 500 with ~80 log lines."""
  body = b"this is not gzip at all"
  request = (b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
  with caplog.at_level(logging.INFO):
    answer = raw_exchange(keyless.port, request, wait=3)
  assert answer.startswith(b"HTTP/1.1 400") and b"body: cannot be read" in answer, answer
  assert "Traceback" not in caplog.text


@pytest.mark.parametrize("headers,status", [
    (b"Content-Length: 99999999\r\nAuthorization: Bearer key\r\n", b"413"),
    (b"Content-Length: 10\r\n", b"401"), (b"Content-Length: 10\r\nAuthorization: Bearer no\r\n",
                                          b"401")])
def test_expect_100_continue_is_granted_only_after_the_key_and_size_checks(keyed, headers,
                                                                          status):
  """A client that waits for 100 Continue before sending its body gets the refusal instead,
  and never the invitation to upload it."""
  request = (b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Expect: 100-continue\r\n" + headers + b"\r\n")
  answer = raw_exchange(keyed.port, request, wait=2)
  assert answer.startswith(b"HTTP/1.1 " + status), answer
  assert b"100 Continue" not in answer


def test_expect_100_continue_is_granted_to_a_good_request(keyed):
  body = json.dumps({"pairs": [PAIR]}).encode()
  with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as s:
    s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer key\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    assert s.recv(64).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(body)
    answer = b""
    while b'"scores"' not in answer:
      answer += s.recv(65536)
  assert b"HTTP/1.1 200" in answer


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_a_keyless_server_answers_health_and_metrics_to_loopback_names_only(keyless, path):
  """DNS rebinding: a page's own name resolving to 127.0.0.1 read them from a keyless
  server."""
  request = (b"GET %s HTTP/1.1\r\nHost: rebound.example:8000\r\n\r\n" % path.encode())
  answer = raw_exchange(keyless.port, request, wait=2)
  assert answer.startswith(b"HTTP/1.1 403") and b"rebound.example" in answer, answer
  ok = raw_exchange(keyless.port, b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode(),
                    wait=2)
  assert ok.startswith(b"HTTP/1.1 200"), ok


def test_a_key_http_clients_cannot_send_is_refused_at_start():
  with pytest.raises(GramError, match="API key holds characters other than printable ASCII"):
    RewardServer(tiny_reward(), Limits(), api_key="clé-secrète")


def test_a_chat_template_that_renders_without_bound_is_refused_at_start(monkeypatch):
  """The served template must render a long conversation within a bound (5 s; 0.05 s here,
  so that the refused template's render, which cannot be stopped, ends within a second)."""
  reward = tiny_reward()
  reward.scorer.encoder.chat_template = (
      "{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}x")
  bound = tok.check_render_bound
  monkeypatch.setattr(tok, "check_render_bound",
                      lambda *args, **kwargs: bound(*args, **{**kwargs, "seconds": 0.05}))
  with pytest.raises(GramError, match="its chat template did not render .* within 0.05 s"):
    RewardServer(reward, Limits())
  reward.scorer.encoder.chat_template = "{{ messages[0]['content'] * 100 }}"
  with pytest.raises(GramError, match="its chat template rendered [\\d,]+ characters from"):
    RewardServer(reward, Limits())
