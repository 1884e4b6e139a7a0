"""Reward functions for RLHF trainers, backed by a running gram_jax reward server.

Each has the signature its framework calls (read from their sources, late 2026):
- TRL `GRPOTrainer(reward_funcs=[trl_reward_func(URL)])`: called as
  `f(prompts=..., completions=..., completion_ids=..., trainer_state=..., **columns)`;
  prompts and completions are strings, or message lists (conversational datasets).
- tunix `GRPOLearner(reward_fns=[tunix_reward_fn(URL)])`: called as
  `f(prompts=..., completions=..., mode=..., **columns)`.
- verl `custom_reward_function.path=<this file>`: `name=verl_compute_score` (per sample,
  against `ground_truth` as the reference answer; naive/dapo reward managers) or
  `name=verl_compute_score_batch` (group rewards; `reward_model.reward_manager=batch`).
  verl passes no prompt: put it in `extra_info["question"]` (or `"prompt"`), and the server
  address in `custom_reward_function.reward_kwargs.url` (or GRAM_JAX_URL).

Group rewards: the completions of one prompt are consecutive in every one of these trainers
(each prompt is repeated num_generations times), so a run of equal prompts is one group and
gets one /group_reward request; a trainer that splits a group across processes scores each
part as a group.
"""
import concurrent.futures
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence


def text_of(value: Any) -> str:
  """A prompt or completion as text: a string, or a message list (the user's question for a
  prompt, the assistant's content for a completion; earlier turns as 'Role: text')."""
  if isinstance(value, str):
    return value
  messages = [m for m in value if m.get("role") != "system"]
  if len(messages) == 1:
    return messages[0]["content"]
  return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in value)


class GramRewardClient:
  """HTTP client of a gram_jax reward server: retries 503 (after its Retry-After) and
  connection errors, never a 4xx (a bad request stays bad)."""

  def __init__(self, url: str, api_key: str = "", timeout: float = 180.0, retries: int = 5,
               method: str = "all_pairs", opponents: int = 4, threads: int = 8):
    self.url, self.api_key, self.timeout, self.retries = url.rstrip("/"), api_key, timeout, retries
    self.method, self.opponents, self.threads = method, opponents, threads

  def post(self, path: str, body: dict) -> dict:
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    data = json.dumps(body).encode()
    for attempt in range(self.retries):
      request = urllib.request.Request(self.url + path, data=data, headers=headers)
      try:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
          return json.loads(response.read())
      except urllib.error.HTTPError as e:
        answer = e.read().decode("utf-8", "replace")
        if e.code != 503 or attempt == self.retries - 1:
          raise RuntimeError(f"{self.url}{path}: HTTP {e.code}: {answer}") from None
        time.sleep(float(e.headers.get("Retry-After", "1")))
      except (urllib.error.URLError, OSError) as e:
        if attempt == self.retries - 1:
          raise RuntimeError(f"{self.url}{path}: {e}") from None
        time.sleep(1.0)
    raise AssertionError("unreachable")

  def group_rewards(self, prompt: str, completions: Sequence[str]) -> list[float]:
    """Each completion's mean win probability within its group."""
    return self.post("/group_reward", {"prompt": prompt, "completions": list(completions),
                                       "method": self.method,
                                       "opponents": self.opponents})["rewards"]

  def rewards_by_group(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """Group rewards of a flat batch whose runs of equal prompts are groups; the groups'
    requests go out together, so the server batches them."""
    runs, start = [], 0
    for i in range(1, len(prompts) + 1):
      if i == len(prompts) or prompts[i] != prompts[start]:
        runs.append((start, i))
        start = i
    with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
      answers = list(pool.map(lambda run: self.group_rewards(
          prompts[run[0]], completions[run[0]:run[1]]), runs))
    return [reward for answer in answers for reward in answer]

  def pair_scores(self, triples: Sequence[tuple[str, str, str]]) -> list[list[float]]:
    return self.post("/score", {"pairs": [
        {"prompt": p, "response_a": a, "response_b": b} for p, a, b in triples]})["scores"]


def trl_reward_func(url: str, api_key: str = "", **options: Any) -> Callable[..., list[float]]:
  """A TRL GRPO reward function: group rewards of the completions of each prompt."""
  client = GramRewardClient(url, api_key, **options)

  def gram_jax_group_reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    return client.rewards_by_group([text_of(p) for p in prompts],
                                   [text_of(c) for c in completions])
  return gram_jax_group_reward


def tunix_reward_fn(url: str, api_key: str = "", **options: Any) -> Callable[..., list[float]]:
  """A tunix GRPO reward function: group rewards of the completions of each prompt."""
  client = GramRewardClient(url, api_key, **options)

  def gram_jax_group_reward(prompts: list[str], completions: list[str],
                            **kwargs: Any) -> list[float]:
    return client.rewards_by_group(list(prompts), list(completions))
  return gram_jax_group_reward


def _verl_client(url: str | None, api_key: str | None) -> GramRewardClient:
  url = url or os.environ.get("GRAM_JAX_URL", "")
  if not url:
    raise ValueError("gram_jax reward: set custom_reward_function.reward_kwargs.url or "
                     "GRAM_JAX_URL to the reward server's address")
  key = api_key if api_key is not None else os.environ.get("GRAM_JAX_API_KEY", "")
  return GramRewardClient(url, key)


def _question(extra_info: dict | None) -> str:
  extra_info = extra_info or {}
  for key in ("question", "prompt"):
    if isinstance(extra_info.get(key), (str, list)):
      return text_of(extra_info[key])
  raise ValueError("gram_jax reward: verl passes no prompt; put it in the dataset's "
                   "extra_info['question']")


def verl_compute_score(data_source: str, solution_str: str, ground_truth: Any,
                       extra_info: dict | None = None, url: str | None = None,
                       api_key: str | None = None, **kwargs: Any) -> float:
  """verl per-sample reward: P(solution better than the reference `ground_truth`), both
  orders averaged (the paper's PPO reward when ground_truth is the policy's reference)."""
  if not isinstance(ground_truth, str) or not ground_truth:
    raise ValueError("gram_jax reward: verl_compute_score needs the reference answer as "
                     "ground_truth; for rewards without one use verl_compute_score_batch")
  client = _verl_client(url, api_key)
  return float(client.pair_scores([(_question(extra_info), solution_str, ground_truth)])[0][0])


def verl_compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                             ground_truths: Sequence[Any], extra_infos: Sequence[dict],
                             url: str | None = None, api_key: str | None = None,
                             **kwargs: Any) -> list[float]:
  """verl batch reward manager: group rewards (no reference needed); a group is a run of
  samples with the same question."""
  client = _verl_client(url, api_key)
  return client.rewards_by_group([_question(e) for e in extra_infos], list(solution_strs))
