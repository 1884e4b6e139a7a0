"""The peer of bench/replicate_gram.py: a Bradley–Terry scalar reward model, trained as users
train one today (transformers' AutoModelForSequenceClassification and TRL's RewardTrainer on
conversational pairs), then scored by gram_jax's evaluate rules through a scalar adapter.

Needs `pip install trl datasets` (not gram_jax dependencies).
"""
import dataclasses
import json
import os
import shutil
import time
from typing import Any

import numpy as np
import torch
import transformers

from gram_jax.stages import evaluate


def _messages(prompt: str, response: str | None = None) -> list[dict]:
  turns = [{"role": "user", "content": prompt}]
  return turns + ([{"role": "assistant", "content": response}] if response is not None else [])


@dataclasses.dataclass(frozen=True)
class ScalarJudgment:
  """Two rewards of one pair; a scalar model has no A/B order to be inconsistent over."""
  score_a: float
  score_b: float
  trimmed: bool
  consistent: bool = True


class ScalarRewardModel:
  """What evaluate reads from a RewardModel (judge_batch, scores_of, describe, batch_size,
  max_len, reasoning), backed by one reward per (prompt, response): the chat-rendered
  conversation's last token."""
  reasoning = None

  def __init__(self, model: Any, tokenizer: Any, max_len: int, batch_size: int):
    self.model, self.tokenizer = model.eval(), tokenizer
    self.max_len, self.batch_size = max_len, batch_size
    self.device = next(model.parameters()).device

  def rewards(self, conversations: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and whether each conversation was cut to its last max_len tokens."""
    ids = [self.tokenizer.apply_chat_template(_messages(p, r), tokenize=True,
                                              return_dict=True)["input_ids"]
           for p, r in conversations]
    trimmed = np.array([len(x) > self.max_len for x in ids])
    ids = [x[-self.max_len:] for x in ids]
    out = []
    for start in range(0, len(ids), self.batch_size):
      chunk = ids[start:start + self.batch_size]
      width = max(map(len, chunk))
      pad = self.tokenizer.pad_token_id
      batch = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=self.device)
      mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk],
                          device=self.device)
      with torch.no_grad():
        out.append(self.model(input_ids=batch, attention_mask=mask).logits[:, 0].float().cpu())
    return torch.cat(out).numpy(), trimmed

  def judge_batch(self, pairs: list, first_index: int = 0) -> list[ScalarJudgment]:
    del first_index
    flat = [(p, r) for p, a, b in pairs for r in (a, b)]
    rewards, trimmed = self.rewards(flat)
    return [ScalarJudgment(float(rewards[2 * i]), float(rewards[2 * i + 1]),
                           bool(trimmed[2 * i] or trimmed[2 * i + 1]))
            for i in range(len(pairs))]

  def scores_of(self, judged: list[ScalarJudgment]) -> np.ndarray:
    return np.array([(j.score_a, j.score_b) for j in judged], np.float32)

  def describe(self) -> str:
    return (f"Bradley–Terry scalar reward model (TRL RewardTrainer): the reward at the last "
            f"token of each chat-rendered conversation, up to {self.max_len} tokens")


class StepTimer(transformers.TrainerCallback):
  """Seconds of every optimizer step."""

  def __init__(self):
    self.seconds: list[float] = []

  def on_step_begin(self, args, state, control, **kwargs):
    self.start = time.perf_counter()

  def on_step_end(self, args, state, control, **kwargs):
    if torch.cuda.is_available():
      torch.cuda.synchronize()
    self.seconds.append(time.perf_counter() - self.start)


def train(base: str, train_path: str, scale: Any, seed: int, out: str
          ) -> tuple[Any, Any, dict[str, Any]]:
  """TRL's RewardTrainer on the pairs of train_path, with the GRAM rows' schedule."""
  import datasets
  import trl
  with open(train_path, encoding="utf-8") as f:
    pairs = json.load(f)
  dataset = datasets.Dataset.from_list([
      {"prompt": _messages(p["prompt"]), "chosen": [_messages("", p["chosen"])[1]],
       "rejected": [_messages("", p["rejected"])[1]]} for p in pairs])
  tokenizer = transformers.AutoTokenizer.from_pretrained(base)
  cuda = torch.cuda.is_available()
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      base, num_labels=1, dtype=torch.float32)
  steps = max(1, int(scale.epochs * len(pairs) / scale.pairs_per_step))
  args = trl.RewardConfig(
      output_dir=out, per_device_train_batch_size=scale.pairs_per_step, max_steps=steps,
      learning_rate=scale.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.1,
      max_length=scale.cutoff, bf16=cuda, logging_steps=1, save_strategy="no",
      report_to=[], seed=seed, data_seed=seed, dataloader_num_workers=0)
  timer = StepTimer()
  trainer = trl.RewardTrainer(model=model, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer])
  kept = len(trainer.train_dataset)
  trainer.train()
  seconds = timer.seconds[1:]  # the first step warms up kernels
  return trainer.model, tokenizer, {
      "steps": steps, "pairs_kept": kept, "pairs_filtered_too_long": len(pairs) - kept,
      "pairs_per_second": scale.pairs_per_step * len(seconds) / sum(seconds)
      if seconds else float("nan")}


def train_and_evaluate(base: str, train_set: dict, files: dict[str, str], scale: Any,
                       seed: int, out: str, key: str) -> dict[str, Any]:
  """Trains the peer and evaluates it on every file with evaluate's rules; a result for the
  same `key` (inputs and settings) is reused."""
  done = os.path.join(out, "peer.json")
  if os.path.exists(done):
    with open(done, encoding="utf-8") as f:
      result = json.load(f)
    if result.get("key") == key:
      return result
  shutil.rmtree(out, ignore_errors=True)
  torch.manual_seed(seed)
  model, tokenizer, stats = train(base, train_set["path"], scale, seed, os.path.join(out, "trl"))
  judge = ScalarRewardModel(model, tokenizer, scale.cutoff, scale.eval_batch)
  folders = evaluate.output_names(list(files.values()))
  summaries = {name: evaluate.evaluate_file(judge, path, "auto", os.path.join(out, folder), {})
               for (name, path), folder in zip(files.items(), folders)}
  result = {**stats, "summaries": summaries, "key": key}
  with open(done, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  return result
