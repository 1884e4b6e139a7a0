"""The reward server as RLHF trainers call it: OpenRLHF's own request code path, TRL / tunix /
verl reward functions called with the arguments those trainers pass, OpenAI-compatible chat
completions checked against transformers, and scores that do not depend on batch-mates."""
import asyncio
import importlib.util
import json
import urllib.request

import numpy as np
import pytest
import torch
import transformers

from gram_jax.serving import rlhf_adapters
from gram_jax.serving.request_parsing import Limits
from gram_jax.inference.reward import RewardModel
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures

KEY = "rm-key"
LIMITS = Limits(max_pairs=64, max_input_tokens=2000, max_batch_pairs=16, max_wait_ms=20)
QUESTIONS = ["What is 2 + 2?", "Name a fruit."]
ANSWERS = [["It is 4.", "Five.", "4"], ["An apple.", "A car.", "Banana"]]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("rlhf"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return path


@pytest.fixture(scope="module")
def reward(model_path):
  return RewardModel.from_pretrained(model_path, max_len=1024, batch_size=4,
                                     template=templates.COMPACT_JUDGE_PROMPT)


@pytest.fixture(scope="module")
def served(reward):
  running = serve_in_background(RewardServer(reward, LIMITS, api_key=KEY))
  yield running
  running.stop()


def post(url, path, body, key=KEY):
  request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                   headers={"Authorization": f"Bearer {key}"})
  with urllib.request.urlopen(request, timeout=120) as response:
    return json.loads(response.read())


def group_rewards_by_hand(reward, question, answers):
  """Mean both-order win probability of each answer against every other (all pairs)."""
  totals, games = np.zeros(len(answers)), np.zeros(len(answers))
  for i in range(len(answers)):
    for j in range(i + 1, len(answers)):
      (si, sj), = reward.score_batch([(question, answers[i], answers[j])])
      totals[i] += si
      totals[j] += sj
      games[i] += 1
      games[j] += 1
  return totals / games


async def openrlhf_post_request(url, data, try_max_times=5):
  """OpenRLHF 0.11 SingleTurnAgentExecutor._fetch_rewards_via_http's `_post_request`,
  rewritten from its published source: a fresh aiohttp session per try, 180 s total timeout,
  raise_for_status, any client error retried after 1 s, no headers of its own (the key rides
  in the URL's user info, which aiohttp sends as HTTP Basic)."""
  import aiohttp
  timeout = aiohttp.ClientTimeout(total=180)
  attempts = 0
  for _ in range(try_max_times):
    attempts += 1
    try:
      async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, json=data) as response:
          response.raise_for_status()
          return await response.json(), attempts
    except aiohttp.ClientError:
      pass
    await asyncio.sleep(1)
  raise RuntimeError("request failed")


def test_openrlhf_client_code_path(served, reward, model_path):
  policy = tok.load_tokenizer(model_path)  # the policy's tokenizer renders its chat template
  prompt = policy.apply_chat_template([{"role": "user", "content": QUESTIONS[0]}],
                                      tokenize=False, add_generation_prompt=True)
  action = policy.encode("It is 4.<|im_end|>", add_special_tokens=False)
  query = policy.decode(policy.encode(prompt, add_special_tokens=False) + action,
                        skip_special_tokens=False)
  payload = {"query": [query], "prompts": [prompt], "labels": ["Five."]}
  url = served.url.replace("http://", f"http://rm:{KEY}@") + "/get_reward"
  served.listening.server.draining = True  # the first try meets a 503: OpenRLHF retries
  served.loop.call_soon_threadsafe(served.loop.call_later, 0.5, setattr,
                                   served.listening.server, "draining", False)
  info, attempts = asyncio.run(openrlhf_post_request(url, payload))
  expected = reward.score_batch([(QUESTIONS[0], "It is 4.", "Five.")])[0]
  score = info.get("scores") if info.get("scores") is not None else info.get("rewards")
  assert attempts == 2
  np.testing.assert_allclose(score, [expected[0]], atol=1e-6)
  np.testing.assert_allclose(info["extra_logs"]["reference_score"], [expected[1]], atol=1e-6)
  assert info["extra_logs"]["trimmed"] == [0.0]


def test_openrlhf_left_padded_batch(served, reward, model_path):
  """A batch as OpenRLHF decodes it: each sequence left-padded to the batch's width and
  right-padded after its response, pads included in the text; each scores as if unpadded."""
  policy = tok.load_tokenizer(model_path)
  pad = policy.pad_token_id if policy.pad_token_id is not None else policy.eos_token_id
  prompts, rows = [], []
  for question, answer in zip(QUESTIONS, ("It is 4.", "An apple.")):
    prompt = policy.apply_chat_template([{"role": "user", "content": question}],
                                        tokenize=False, add_generation_prompt=True)
    prompts.append(prompt)
    rows.append(policy.encode(prompt, add_special_tokens=False) +
                policy.encode(answer + "<|im_end|>", add_special_tokens=False))
  width = max(len(ids) for ids in rows) + 3
  queries = [policy.decode([pad] * (width - len(ids) - 2) + ids + [pad] * 2,
                           skip_special_tokens=False) for ids in rows]
  assert all(q.startswith(policy.decode([pad])) for q in queries)
  info = post(served.url, "/get_reward",
              {"query": queries, "prompts": prompts, "labels": ["Five.", "A car."]})
  expected = reward.score_batch([(QUESTIONS[0], "It is 4.", "Five."),
                                 (QUESTIONS[1], "An apple.", "A car.")])
  score = info.get("scores") if info.get("scores") is not None else info.get("rewards")
  np.testing.assert_allclose(score, expected[:, 0], atol=1e-6)


def test_openrlhf_without_the_key_is_refused(served):
  import aiohttp

  async def status():
    async with aiohttp.ClientSession() as session:
      async with session.post(served.url.replace("http://", "http://rm:wrong@") +
                              "/get_reward", json={"query": ["q"], "prompts": ["q"]}) as r:
        return r.status
  assert asyncio.run(status()) == 401


def expected_groups(reward):
  return np.concatenate([group_rewards_by_hand(reward, q, a) for q, a in zip(QUESTIONS, ANSWERS)])


def test_trl_reward_function_as_grpo_trainer_calls_it(served, reward):
  func = rlhf_adapters.trl_reward_func(served.url, KEY)
  prompts = [q for q, answers in zip(QUESTIONS, ANSWERS) for _ in answers]
  completions = [a for answers in ANSWERS for a in answers]
  calls = dict(completion_ids=[[1, 2]] * 6, trainer_state=object(), log_extra=lambda *a: None,
               log_metric=lambda *a: None, answer=["4"] * 6)  # dataset columns ride along
  expected = expected_groups(reward)
  np.testing.assert_allclose(func(prompts=prompts, completions=completions, **calls), expected,
                             atol=1e-6)
  conversational = func(prompts=[[{"role": "user", "content": p}] for p in prompts],
                        completions=[[{"role": "assistant", "content": c}] for c in completions],
                        **calls)
  np.testing.assert_allclose(conversational, expected, atol=1e-6)


def test_tunix_reward_fn_as_the_reward_manager_calls_it(served, reward):
  func = rlhf_adapters.tunix_reward_fn(served.url, KEY)
  prompts = [q for q, answers in zip(QUESTIONS, ANSWERS) for _ in answers]
  completions = [a for answers in ANSWERS for a in answers]
  rewards = func(prompts=prompts, completions=completions, mode="train", answer=["4"] * 6)
  np.testing.assert_allclose(rewards, expected_groups(reward), atol=1e-6)


def test_verl_compute_score_loaded_from_its_file_as_verl_does(served, reward):
  spec = importlib.util.spec_from_file_location("custom_module", rlhf_adapters.__file__)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # verl's get_custom_reward_fn: the file alone, no package
  kwargs = {"url": served.url, "api_key": KEY}  # custom_reward_function.reward_kwargs
  score = module.verl_compute_score(data_source="hh", solution_str="It is 4.",
                                    ground_truth="Five.",
                                    extra_info={"question": QUESTIONS[0], "index": 0}, **kwargs)
  expected = reward.score_batch([(QUESTIONS[0], "It is 4.", "Five.")])[0, 0]
  assert score == pytest.approx(float(expected), abs=1e-6)
  batch = module.verl_compute_score_batch(
      data_sources=["hh"] * 6, solution_strs=[a for answers in ANSWERS for a in answers],
      ground_truths=[None] * 6, extra_infos=[{"question": q} for q, answers in
                                             zip(QUESTIONS, ANSWERS) for _ in answers],
      **kwargs)
  np.testing.assert_allclose(batch, expected_groups(reward), atol=1e-6)
  with pytest.raises(ValueError, match="extra_info\\['question'\\]"):
    module.verl_compute_score("hh", "x", "y", {}, **kwargs)


def test_group_reward_neighbours_schedule(served, reward):
  answers = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g"]
  body = post(served.url, "/group_reward", {"prompt": "Pick one.", "completions": answers,
                                            "method": "neighbours", "opponents": 2})
  assert body["comparisons"] == 14
  totals, games = np.zeros(7), np.zeros(7)
  for i in range(7):
    for step in (1, 2):
      j = (i + step) % 7
      (si, sj), = reward.score_batch([("Pick one.", answers[i], answers[j])])
      totals[[i, j]] += [si, sj]
      games[[i, j]] += 1
  np.testing.assert_allclose(body["rewards"], totals / games, atol=1e-6)


def test_a_pair_scores_the_same_alone_and_among_64(served):
  rng = np.random.default_rng(0)
  words = ["Paris", "is", "the", "capital", "four", "apple", "answer", "B", "A"]
  crowd = [{"prompt": " ".join(rng.choice(words, rng.integers(1, 40))),
            "response_a": " ".join(rng.choice(words, rng.integers(1, 80))),
            "response_b": " ".join(rng.choice(words, rng.integers(1, 80)))} for _ in range(63)]
  pair = {"prompt": QUESTIONS[0], "response_a": "It is 4.", "response_b": "Five."}
  alone = post(served.url, "/score", {"pairs": [pair]})["scores"][0]
  among = post(served.url, "/score", {"pairs": crowd[:30] + [pair] + crowd[30:]})["scores"][30]
  assert alone == among  # bit for bit: each prompt is read at its own bucket's width


def _torch_logprobs(model_path, ids):
  model = transformers.AutoModelForCausalLM.from_pretrained(model_path).eval()
  with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, -1]
  return torch.log_softmax(logits.double(), -1).numpy()


def test_chat_completions_logprobs_match_transformers(served, reward, model_path):
  message = templates.fill(templates.COMPACT_JUDGE_PROMPT, QUESTIONS[0], "It is 4.", "Five.")
  body = post(served.url, "/v1/chat/completions", {
      "model": "judge", "messages": [{"role": "user", "content": message}], "max_tokens": 1,
      "temperature": 0, "logprobs": True, "top_logprobs": 5})
  choice = body["choices"][0]
  assert body["object"] == "chat.completion" and choice["finish_reason"] == "length"
  ids = reward.scorer.encoder.encode_all([(QUESTIONS[0], "It is 4.", "Five.")])[0]
  expected = _torch_logprobs(model_path, ids)
  top = choice["logprobs"]["content"][0]["top_logprobs"]
  assert [t["logprob"] for t in top] == pytest.approx(np.sort(expected)[::-1][:5], abs=1e-4)
  assert choice["logprobs"]["content"][0]["logprob"] == pytest.approx(top[0]["logprob"])
  assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 1,
                           "total_tokens": len(ids) + 1}
  label_ids = reward.scorer.label_ids  # P(A), P(B) as a GenRM client reads them
  p = np.exp(expected[list(label_ids)])
  probs = reward.scorer.label_probs([(QUESTIONS[0], "It is 4.", "Five.")])[0][0]
  np.testing.assert_allclose(probs, p / p.sum(), atol=1e-5)


def test_chat_completions_greedy_text_and_choices(served, model_path):
  policy = tok.load_tokenizer(model_path)
  messages = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "Name a fruit."}]
  body = post(served.url, "/v1/chat/completions", {"messages": messages, "max_tokens": 6,
                                                   "temperature": 0})
  ids = policy.encode(policy.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=False, enable_thinking=False),
                      add_special_tokens=False)
  model = transformers.AutoModelForCausalLM.from_pretrained(model_path).eval()
  with torch.no_grad():
    out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                         pad_token_id=policy.pad_token_id, eos_token_id=policy.eos_token_id)
  new = [int(t) for t in out[0, len(ids):] if int(t) != policy.eos_token_id]
  assert body["choices"][0]["message"]["content"] == policy.decode(new,
                                                                  skip_special_tokens=False)
  sampled = post(served.url, "/v1/chat/completions", {"messages": messages, "max_tokens": 3,
                                                      "temperature": 1.0, "n": 2, "seed": 3})
  assert [c["index"] for c in sampled["choices"]] == [0, 1]
  assert sampled["usage"]["completion_tokens"] <= 6
