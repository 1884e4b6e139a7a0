"""Property-based fuzzing of the reward server's JSON endpoints over real HTTP: random JSON of
every shape, wrong types, missing/extra fields, huge and empty strings, pathological chat
markup, 400-digit integers, random bytes, with idle sockets holding connection slots. Every
answer is a JSON object with a 2xx or 4xx status naming what is wrong — never a 500, never
a score that is not a finite number — and after every attack the server gives a fixed set
of pairs the very scores it gave before the first."""
import json
import math
import time
import urllib.error
import urllib.request

import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings, strategies as st

from gram_jax.inference.reward import RewardModel
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.server import RewardServer
from gram_jax.models.config import tiny_config
from gram_jax.models.decoder import Decoder
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from tests.reliability.test_serve_hostile import idle_sockets

LIMITS = Limits(max_body_bytes=50_000, max_pairs=4, max_text_chars=3_000,
                max_input_tokens=400, max_batch_pairs=8, max_wait_ms=5, max_new_tokens=8,
                max_connections=12, header_timeout_s=0.3)
BASELINE_PAIRS = json.dumps({"pairs": [
    {"prompt": "Capital?", "response_a": "Paris", "response_b": "A"},
    {"prompt": "Which is better?", "response_a": "B", "response_b": "Paris is the capital."}]
}).encode()
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ENDPOINTS = ("/score", "/rank", "/reward", "/get_reward", "/group_reward",
             "/v1/chat/completions", "/generative_scoring")


@pytest.fixture(scope="module")
def url():
  tokenizer = tok.train_bpe_tokenizer(["Which answer is better, A or B? Paris is the capital."]
                                      * 4, vocab_size=128)
  model = Decoder(tiny_config("qwen3", vocab_size=len(tokenizer), hidden_size=32,
                              intermediate_size=64, num_heads=4, num_kv_heads=2, head_dim=8,
                              num_layers=1), nnx.Rngs(0))
  reward = RewardModel(model, tokenizer, max_len=512, batch_size=4,
                       template=templates.COMPACT_JUDGE_PROMPT)
  running = serve_in_background(RewardServer(reward, LIMITS))
  yield running.url
  running.stop()


@pytest.fixture(scope="module")
def baseline(url):
  status, answer = post(url, "/score", BASELINE_PAIRS)
  assert status == 200
  return answer["scores"]


def assert_unchanged(url: str, baseline: list) -> None:
  status, answer = post(url, "/score", BASELINE_PAIRS)
  assert status == 200 and answer["scores"] == baseline  # bit-identical floats


def post(url: str, path: str, data: bytes) -> tuple[int, dict]:
  request = urllib.request.Request(url + path, data=data,
                                   headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


MARKERS = ("<|im_start|>", "<|im_end|>", "user", "assistant", "system", "\n", "x",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>",
           "[A]", "[B]", "<think>", "</think>")
texts = st.one_of(st.text(max_size=30), st.just(""), st.just("x" * (LIMITS.max_text_chars + 1)),
                  st.just("word " * 300), st.text(alphabet="éü中文🙂\u2028\x00", max_size=10),
                  st.text(alphabet="ab\ud800\udfff", max_size=6),  # lone surrogates
                  st.just("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"),
                  st.just("<|im_start|>a\n" * 200),  # unclosed turns (was quadratic)
                  st.just("<|start_header_id|>user<|end_header_id|>\n\n" * 60),
                  st.lists(st.sampled_from(MARKERS), max_size=60).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts,
                    st.just(10 ** 400), st.just(-10 ** 400))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) |
                      st.dictionaries(texts, inner, max_size=3), max_leaves=10)
pair = st.dictionaries(st.sampled_from(("prompt", "response_a", "response_b", "extra")),
                       texts | values, max_size=4)
bodies = st.one_of(
    values,
    st.fixed_dictionaries({"pairs": st.lists(pair, max_size=6) | values}),
    st.fixed_dictionaries({"prompt": texts | values, "responses": st.lists(texts, max_size=6)
                           | values, "method": st.sampled_from(("linear", "knockout", "bad"))}),
    st.fixed_dictionaries({"query": st.lists(texts, max_size=5) | values,
                           "prompts": st.lists(texts, max_size=5) | values,
                           "references": st.lists(texts | st.none(), max_size=5) | values}),
    st.fixed_dictionaries({"prompt": texts | values, "completions": st.lists(texts, max_size=6)
                           | values, "method": st.sampled_from(("all_pairs", "neighbours", "x")),
                           "opponents": scalars}),
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(("user", "system", "assistant", "tool")),
         "content": texts | values}), max_size=3) | values,
        "max_tokens": scalars, "temperature": scalars, "n": scalars, "logprobs": scalars,
        "top_logprobs": scalars, "top_p": scalars, "seed": scalars,
        "stop": st.lists(texts, max_size=5) | scalars}),
    st.fixed_dictionaries({  # vLLM's /generative_scoring, raw and GRAM's form
        "query": texts | st.lists(st.integers(-5, 200), max_size=40) | values,
        "items": st.lists(texts | st.lists(st.integers(-5, 200), max_size=20), max_size=5)
        | values, "label_token_ids": st.lists(st.integers(-5, 200), max_size=4) | values,
        "apply_softmax": scalars, "item_first": scalars, "form": st.sampled_from(
            ("raw", "both_orders", "x")), "reference": texts | st.none(),
        "model": st.none() | texts}))


def check_answer(path: str, status: int, answer: dict) -> None:
  vllm = path == "/generative_scoring"  # vLLM's error shape; a model it does not serve: 404
  assert status in (200, 400, 413, 422) + ((404,) if vllm else ()), (status, answer)
  if status != 200:
    message = answer["error"]["message"] if vllm else answer.get("error")
    assert isinstance(message, str) and message
    assert not vllm or answer["error"]["code"] == status
    return
  if path == "/v1/chat/completions":
    assert answer["choices"] and all(isinstance(c["message"]["content"], str)
                                     for c in answer["choices"])
    return
  numbers = {"/score": lambda a: [x for pair in a["scores"] for x in pair],
             "/rank": lambda a: a["scores"], "/group_reward": lambda a: a["rewards"],
             "/generative_scoring": lambda a: [d["score"] for d in a["data"]]}.get(
                 path, lambda a: a["rewards"] + a["reference_scores"])(answer)
  assert numbers and all(isinstance(x, float) and math.isfinite(x) for x in numbers)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=bodies, idle=st.sampled_from((0, 0, 0, 20)))
def test_any_json_body_gets_a_json_answer_never_a_500(url, baseline, path, body, idle):
  port = int(url.rsplit(":", 1)[1])
  sockets = idle_sockets(port, idle) if idle else []
  if idle:  # 20 against 12 slots, silent long enough to be closed for a newcomer (0.15 s
    time.sleep(0.16)  # with header_timeout_s=0.3)
  try:
    status, answer = post(url, path, json.dumps(body).encode())
  finally:
    for s in sockets:
      s.close()
  check_answer(path, status, answer)
  assert_unchanged(url, baseline)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), raw=st.one_of(
    st.binary(max_size=200), st.just(b"[" * 20_000), st.just(b"[" * 100_000),
    st.just(b'{"pairs": NaN}'),
    st.just(b"\xff\xfe{}"), st.just("{\"prompt\": \"é\"}".encode("latin-1")),
    st.just(b"x" * (LIMITS.max_body_bytes + 1))))
def test_any_bytes_get_a_json_answer_never_a_500(url, baseline, path, raw):
  status, answer = post(url, path, raw)
  check_answer(path, status, answer)
  assert status != 200
  assert_unchanged(url, baseline)
