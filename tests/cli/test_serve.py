"""The reward server over real HTTP on a loopback port: endpoints, limits, API key, and
served scores equal to direct RewardModel calls."""
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import transformers

from gram_jax import GramError, configlib
from gram_jax.inference.reward import RewardModel
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.server import RewardServer
from gram_jax.judge_card import Reasoning, write_judge_card
from gram_jax.pretrained import load_pretrained, load_tokenizer
from gram_jax.stages import serve as serve_stage
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from tests.helpers import cli, hf_fixtures

PAIRS = [("What is the capital of France?", "Paris is the capital.", "The answer is 4."),
         ("What is 2 + 2?", "The answer is 4.", "Paris."),
         ("Name a fruit.", "A", "Response A is better than response B.")]
LIMITS = Limits(max_body_bytes=20_000, max_pairs=8, max_text_chars=2_000, max_input_tokens=1200,
                max_batch_pairs=8, max_wait_ms=20, max_comparisons=20)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("served"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return path


@pytest.fixture(scope="module")
def reward(model_path):
  return RewardModel.from_pretrained(model_path, max_len=1024, batch_size=4)


@pytest.fixture(scope="module", params=["open", "with_key"])
def server(request, reward):
  key = "s3cret" if request.param == "with_key" else ""
  running = serve_in_background(RewardServer(reward, LIMITS, api_key=key))
  yield running, key
  running.stop()


def call(server, path, body=None, key=None, raw: bytes | None = None):
  running, server_key = server
  key = server_key if key is None else key
  data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
  headers = {"Content-Type": "application/json"} if data is not None else {}
  request = urllib.request.Request(running.url + path, data=data,
                                   headers={**headers, "Authorization": f"Bearer {key}"}
                                   if key else headers)
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      payload = response.read()
      return response.status, payload if path == "/metrics" else json.loads(payload)
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def as_body(pairs):
  return {"pairs": [dict(zip(("prompt", "response_a", "response_b"), p)) for p in pairs]}


def test_score_equals_direct_scores(server, reward):
  status, body = call(server, "/score", as_body(PAIRS))
  assert status == 200
  np.testing.assert_allclose(body["scores"], reward.score_batch(PAIRS), atol=1e-6)


def test_rank_and_reward(server, reward):
  prompt, responses = PAIRS[0][0], [PAIRS[0][1], PAIRS[0][2], PAIRS[2][2]]
  status, body = call(server, "/rank", {"prompt": prompt, "responses": responses,
                                        "method": "round_robin"})
  expected = reward.rank(prompt, responses, "round_robin")
  assert status == 200 and body["best"] == expected.best and body["order"] == expected.order
  queries = [p + r for p, r, _ in PAIRS]
  status, body = call(server, "/get_reward", {"query": queries, "prompts": [p for p, _, _ in PAIRS],
                                              "labels": [ref for _, _, ref in PAIRS]})
  assert status == 200
  np.testing.assert_allclose(body["rewards"], reward.score_batch(PAIRS)[:, 0], atol=1e-6)


def test_health_and_metrics(server):
  assert call(server, "/health") == (200, {"status": "ok", "reasoning": False, "votes": None,
                                           "orders": None, "rlhf_readout": None,
                                           "max_len": 1024, "queue_pairs": 0})
  call(server, "/score", as_body(PAIRS[:1]))
  status, text = call(server, "/metrics")
  assert status == 200
  assert b'gram_requests_total{endpoint="score",status="200"}' in text
  assert b"gram_batch_pairs_bucket" in text and b"gram_request_seconds_bucket" in text
  assert b"gram_queue_pairs 0.0" in text and b"gram_open_connections" in text


@pytest.mark.parametrize("path,body,status,message", [
    ("/score", {"pairs": "no"}, 400, "pairs: expected a list"),
    ("/score", {"pairs": [{"prompt": "q", "response_a": 3, "response_b": "b"}]}, 400,
     r"pairs\[0\].response_a: expected a string"),
    ("/score", {"pairs": [{"prompt": "q", "response_a": "a", "response_b": "b"}] * 9}, 413,
     "max_pairs=8"),
    ("/score", {"pairs": [{"prompt": "q", "response_a": "x" * 2001, "response_b": "b"}]}, 413,
     "max_text_chars=2000"),
    ("/score", {"pairs": [{"prompt": "q", "response_a": "Paris " * 300, "response_b": "b"}]}, 413,
     "max_input_tokens=1200"),
    ("/rank", {"prompt": "q", "responses": ["a", "b"], "method": "vote"}, 400, "method: 'vote'"),
    ("/reward", {"query": ["qa"], "prompts": ["q"]}, 400, "labels: a reference response is "
     "required"),
    ("/reward", {"query": ["qa"], "prompts": ["q"], "labels": [""]}, 400, "labels: a reference"),
    ("/reward", {"query": ["qa"], "prompts": ["q"], "labels": "x"}, 400,
     "labels: expected a list"),
    ("/reward", {"query": ["xqa"], "prompts": ["q"], "labels": ["r"]}, 422,
     r"query\[0\]: the query does not start with its prompt"),
    ("/score", {"pairs": [{"prompt": "q\ud800", "response_a": "a", "response_b": "b"}]}, 400,
     r"pairs\[0\].prompt: not valid Unicode \(lone surrogate at character 1\)"),
    ("/rank", {"prompt": "q", "responses": ["a"] * 8, "method": "round_robin"}, 413,
     "round_robin over 8 responses is 28 comparisons, over max_comparisons=20"),
    ("/group_reward", {"prompt": "q", "completions": ["a"] * 8}, 413,
     "all_pairs over 8 completions is 28 comparisons.*use method=neighbours"),
    ("/score", [1, 2], 400, "body: expected a JSON object"),
])
def test_bad_requests_say_what_is_wrong(server, path, body, status, message):
  got, answer = call(server, path, body)
  assert got == status
  assert re.search(message, answer["error"])


def test_malformed_and_oversize_bodies(server):
  status, answer = call(server, "/score", raw=b'{"pairs": [')
  assert status == 400 and "not valid JSON" in answer["error"]
  status, answer = call(server, "/score", raw=b"x" * 30_000)
  assert status == 413 and "max_body_bytes=20000" in answer["error"]


def test_api_key(server):
  running, key = server
  status, _ = call(server, "/score", as_body(PAIRS[:1]), key="wrong")
  assert status == (401 if key else 200)


def test_serve_needs_a_model_path():
  c = configlib.base_config("serve")
  with pytest.raises(GramError, match="model.path: required for stage serve"):
    configlib.validate(c)


def test_the_serve_stage_answers_and_stops_on_sigterm(tmp_path):
  path = str(tmp_path / "model")
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  process = subprocess.Popen(
      cli.main_command("configs/serve.py", f"--config.model.path={path}",
                       f"--config.serve.port={port}", "--config.serve.max_len=256",
                       "--config.template.judge=compact"),
      cwd=cli.ROOT, env=cli.main_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  url = f"http://127.0.0.1:{port}"
  deadline = time.time() + 300
  while True:
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    assert time.time() < deadline
    try:
      with urllib.request.urlopen(url + "/health", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"
        break
    except OSError:
      time.sleep(0.5)
  request = urllib.request.Request(url + "/score", data=json.dumps(as_body(PAIRS)).encode(),
                                   headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=60) as response:
    served = json.loads(response.read())["scores"]
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=60) == 0
  direct = RewardModel.from_pretrained(path, max_len=256, template=templates.COMPACT_JUDGE_PROMPT)
  np.testing.assert_allclose(served, direct.score_batch(PAIRS), atol=1e-6)


def test_concurrent_requests_are_batched_without_changing_scores(server, reward):
  import concurrent.futures
  pools = [[PAIRS[i % 3], PAIRS[(i + 1) % 3]] for i in range(12)]
  with concurrent.futures.ThreadPoolExecutor(12) as threads:
    answers = list(threads.map(lambda pairs: call(server, "/score", as_body(pairs)), pools))
  for pairs, (status, body) in zip(pools, answers):
    assert status == 200
    np.testing.assert_allclose(body["scores"], reward.score_batch(pairs), atol=1e-6)
  status, text = call(server, "/metrics")
  sizes = re.search(rb"gram_batch_pairs_sum ([0-9.e+]+)", text), re.search(
      rb"gram_batch_pairs_count ([0-9.e+]+)", text)
  assert float(sizes[0].group(1)) / float(sizes[1].group(1)) > 2  # requests were merged


def test_best_of_n_cli_writes_the_winners(tmp_path):
  path = str(tmp_path / "model")
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  rows = [{"prompt": PAIRS[0][0], "responses": [PAIRS[0][1], PAIRS[0][2], PAIRS[2][2]], "id": 7},
          {"prompt": PAIRS[1][0], "responses": [PAIRS[1][2], PAIRS[1][1]]}]
  (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "winners.jsonl"
  result = cli.run_main("configs/best_of_n.py", f"--config.model.path={path}",
                        f"--config.best_of_n.input={tmp_path / 'in.jsonl'}",
                        f"--config.best_of_n.output={out}", "--config.best_of_n.method=round_robin",
                        "--config.eval.max_len=1024", f"--config.workdir={tmp_path / 'run'}",
                        timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  direct = RewardModel.from_pretrained(path, max_len=1024)
  for row, winner in zip(rows, [json.loads(l) for l in open(out)]):
    expected = direct.rank(row["prompt"], row["responses"], "round_robin").best
    assert winner["best_index"] == expected and winner.get("id") == row.get("id")
    assert winner["best_response"] == row["responses"][expected]
  (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "q", "responses": []}) + "\n")
  bad = cli.run_main("configs/best_of_n.py", f"--config.model.path={path}",
                     f"--config.best_of_n.input={tmp_path / 'bad.jsonl'}",
                     f"--config.workdir={tmp_path / 'run'}", timeout=300)
  assert cli.error_line(bad) == f"error: {tmp_path / 'bad.jsonl'}:1: field 'responses': " \
                                "expected a non-empty list of strings"


def _torch_greedy(model_path: str, prompt: str, max_new_tokens: int) -> str:
  """The reference policy's greedy answer, as transformers generates it."""
  tokenizer = tok.load_tokenizer(model_path)
  model = transformers.AutoModelForCausalLM.from_pretrained(model_path).eval()
  text = tok.render_user_turn(tokenizer, prompt)
  ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
  with torch.no_grad():
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
  new = [int(t) for t in out[0, ids.shape[1]:]]
  if tokenizer.eos_token_id in new:
    new = new[:new.index(tokenizer.eos_token_id)]
  return tokenizer.decode(new, skip_special_tokens=False).strip()


def test_reward_against_greedy_references(reward, model_path):
  references = serve_stage.greedy_references(load_pretrained(model_path),
                                             load_tokenizer(model_path), 8, 4, 256, None)
  running = serve_in_background(RewardServer(reward, LIMITS, reference=references))
  try:
    prompts = [p for p, _, _ in PAIRS]
    status, body = call((running, ""), "/reward", {"query": [p + r for p, r, _ in PAIRS],
                                                   "prompts": prompts})
  finally:
    running.stop()
  assert status == 200
  expected_refs = [_torch_greedy(model_path, p, 8) for p in prompts]
  expected = reward.score_batch([(p, r, ref) for (p, r, _), ref in zip(PAIRS, expected_refs)])
  np.testing.assert_allclose(body["rewards"], expected[:, 0], atol=1e-5)


@pytest.fixture(scope="module")
def reasoning_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("reasoning"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  write_judge_card(path, templates.COMPACT_RR_PROMPT, ("A", "B"),
                   Reasoning(max_new_tokens=6, temperature=1.0, votes=6))
  return path


def test_a_reasoning_judge_scores_by_votes_and_rewards_rlhf_by_probability(reasoning_path):
  reward = RewardModel.from_pretrained(reasoning_path, max_len=256, batch_size=4)
  running = serve_in_background(RewardServer(reward, LIMITS))
  try:
    status, health = call((running, ""), "/health")
    status, body = call((running, ""), "/score", as_body(PAIRS))
    reward_status, rewards = call((running, ""), "/get_reward", {
        "query": [p + r for p, r, _ in PAIRS], "prompts": [p for p, _, _ in PAIRS],
        "labels": [ref for _, _, ref in PAIRS]})
  finally:
    running.stop()
  assert health["reasoning"] and health["votes"] == 6 and health["orders"] == 2
  assert health["rlhf_readout"] == "probability"
  judged = reward.judge_batch(PAIRS)
  assert status == 200 and len(judged[0].judgments) == 6
  np.testing.assert_allclose(body["scores"], [j.vote.scores() for j in judged], atol=1e-6)
  # RLHF rewards: P(A)/P(B) after each rationale (smooth), not a {0, 1/2, 1} vote share.
  assert reward_status == 200
  np.testing.assert_allclose(rewards["rewards"], [j.score_a for j in judged], atol=1e-6)


def test_best_of_n_votes_with_a_reasoning_judge_only(reasoning_path, model_path, tmp_path):
  (tmp_path / "in.jsonl").write_text(json.dumps(
      {"prompt": PAIRS[0][0], "responses": [PAIRS[0][1], PAIRS[0][2]]}) + "\n")
  run = lambda model: cli.run_main(
      "configs/best_of_n.py", f"--config.model.path={model}",
      f"--config.best_of_n.input={tmp_path / 'in.jsonl'}",
      f"--config.best_of_n.output={tmp_path / 'o.jsonl'}", "--config.eval.max_len=256",
      "--config.reasoning.votes=2", "--config.reasoning.temperature=0.5",
      f"--config.workdir={tmp_path / 'run'}", timeout=300)
  result = run(reasoning_path)
  assert result.returncode == 0, result.stderr[-2000:]
  winner = json.loads(open(tmp_path / "o.jsonl").read())
  direct = RewardModel.from_pretrained(reasoning_path, max_len=256, reasoning=Reasoning(
      max_new_tokens=6, temperature=0.5, votes=2))
  assert winner["best_index"] == direct.rank(PAIRS[0][0], [PAIRS[0][1], PAIRS[0][2]]).best
  assert "config.reasoning.votes, orders and temperature apply to reasoning judges" in \
      cli.error_line(run(model_path))


def _serve_config(model: str):
  spec = importlib.util.spec_from_file_location("serve_config",
                                                os.path.join(cli.ROOT, "configs", "serve.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.model.path, c.serve.warm_up = model, False
  return c


def test_serve_reads_a_cardless_model_under_the_release_preset_with_its_own_prompt(
    model_path):
  c = _serve_config(model_path)
  c.reasoning.preset = "release"
  server = serve_stage.build_server(c)
  assert server.reward.encoder.template == templates.GRAM_RR_PROMPT
  assert server.reward.reasoning.orders == 1 and server.rlhf_readout == "probability"
  assert server.reward.max_len == 8192 - 2048  # serve.max_len 0: the judge's budget
  c.template.judge = "gram"
  with pytest.raises(GramError, match="config.template.judge=gram is a verdict-only prompt, "
                                      "but config.reasoning.preset=release"):
    serve_stage.build_server(c)


def test_best_of_n_refuses_a_verdict_prompt_for_a_reasoning_judge(model_path, tmp_path):
  (tmp_path / "in.jsonl").write_text(json.dumps(
      {"prompt": PAIRS[0][0], "responses": [PAIRS[0][1], PAIRS[0][2]]}) + "\n")
  result = cli.run_main("configs/best_of_n.py", f"--config.model.path={model_path}",
                        f"--config.best_of_n.input={tmp_path / 'in.jsonl'}",
                        "--config.reasoning.preset=release", "--config.template.judge=gram",
                        f"--config.workdir={tmp_path / 'run'}", timeout=300)
  assert "config.template.judge=gram is a verdict-only prompt, but config.reasoning.preset="\
         "release makes this a reasoning judge" in cli.error_line(result)
