"""The peer of bench/replicate_gram.py: a Bradley–Terry scalar reward model, trained as users
train one today (transformers' AutoModelForSequenceClassification and TRL's RewardTrainer on
conversational pairs), then scored by gram_jax's evaluate rules through a scalar adapter.

Needs `pip install -e ".[replicate]"` (trl, peft, datasets: not gram_jax dependencies).
"""
import dataclasses
import hashlib
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
  judgments: tuple = ()  # no A/B judgments to read a slot preference from


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


class LearningCurve(transformers.TrainerCallback):
  """Held-out accuracy (the chosen response's reward above the rejected one's) on the curve
  pairs before the first step, every `every` steps and after the last, as the GRAM rows log
  theirs."""

  def __init__(self, pairs: list[dict], tokenizer: Any, max_len: int, batch_size: int,
               every: int, path: str):
    self.pairs, self.tokenizer, self.every = pairs, tokenizer, every
    self.max_len, self.batch_size, self.path = max_len, batch_size, path
    self.points: list[dict] = []  # a resumed run's earlier points are read back
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        self.points = [json.loads(line) for line in f if line.strip()]

  def measure(self, model: Any, step: int) -> None:
    if any(p["step"] == step for p in self.points):
      return
    was_training = model.training
    judge = ScalarRewardModel(model, self.tokenizer, self.max_len, self.batch_size)
    judged = judge.judge_batch([(p["prompt"], p["chosen"], p["rejected"]) for p in self.pairs])
    point = {"step": step, "accuracy": float(np.mean([j.score_a > j.score_b for j in judged]))}
    self.points.append(point)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(point) + "\n")
    model.train(was_training)

  def on_train_begin(self, args, state, control, model=None, **kwargs):
    self.measure(model, state.global_step)  # 0, or where a resumed run picks up

  def on_step_end(self, args, state, control, model=None, **kwargs):
    if state.global_step % self.every == 0 or state.global_step == state.max_steps:
      self.measure(model, state.global_step)


def lora_config(scale: Any) -> Any:
  """PEFT LoRA as gram_jax's rows use it: the same rank, alpha and seven projections; the
  scalar head trains in full (PEFT's SEQ_CLS task keeps `score` trainable)."""
  import peft
  return peft.LoraConfig(r=scale.lora_rank, lora_alpha=scale.lora_alpha, lora_dropout=0.0,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"], task_type="SEQ_CLS")


def trained_result(base: str, train_path: str, curve_path: str, scale: Any, seed: int,
                   out: str) -> dict[str, Any] | None:
  """The result `train` saved for these inputs and settings, or None."""
  done = os.path.join(out, "peer.json")
  if not os.path.exists(done):
    return None
  with open(done, encoding="utf-8") as f:
    result = json.load(f)
  key = _key(base, train_path, curve_path, dataclasses.asdict(scale), seed)
  return result if result.get("key") == key else None


def train(base: str, train_path: str, curve_path: str, scale: Any, seed: int, out: str
          ) -> dict[str, Any]:
  """TRL's RewardTrainer on the pairs of train_path with the GRAM rows' pairs per step,
  steps, learning rate and schedule; the trained (merged) model saved in out/model. A result
  for the same inputs and settings is reused; a run of them that stopped resumes from its
  last checkpoint (one every curve point) with its curve so far."""
  from gram_jax import provenance
  if cached := trained_result(base, train_path, curve_path, scale, seed, out):
    return cached
  code = provenance.current_code_version()  # the code this process runs, read as it starts
  key = _key(base, train_path, curve_path, dataclasses.asdict(scale), seed)
  done, started = os.path.join(out, "peer.json"), os.path.join(out, "started.json")
  if not (os.path.exists(started) and json.load(open(started, encoding="utf-8")) == key):
    shutil.rmtree(out, ignore_errors=True)  # another run's, or none: start afresh
    os.makedirs(out)
    with open(started, "w", encoding="utf-8") as f:
      json.dump(key, f)
  import datasets
  import trl
  torch.manual_seed(seed)
  with open(train_path, encoding="utf-8") as f:
    pairs = json.load(f)
  with open(curve_path, encoding="utf-8") as f:
    curve_pairs = json.load(f)
  dataset = datasets.Dataset.from_list([
      {"prompt": _messages(p["prompt"]), "chosen": [_messages("", p["chosen"])[1]],
       "rejected": [_messages("", p["rejected"])[1]]} for p in pairs])
  tokenizer = transformers.AutoTokenizer.from_pretrained(base)
  cuda = torch.cuda.is_available()
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      base, num_labels=1, dtype=torch.float32)
  model.config.pad_token_id = tokenizer.pad_token_id
  steps = max(1, int(scale.epochs * len(pairs) / scale.pairs_per_step))
  args = trl.RewardConfig(
      output_dir=os.path.join(out, "trl"), per_device_train_batch_size=scale.pairs_per_step,
      max_steps=steps, learning_rate=scale.learning_rate, lr_scheduler_type="cosine",
      warmup_steps=0.1, max_length=scale.cutoff, bf16=cuda, logging_steps=1,
      # a checkpoint every curve point, so a run stopped with its session resumes there
      save_strategy="steps", save_steps=scale.curve_every, save_total_limit=1,
      report_to=[], seed=seed, data_seed=seed, dataloader_num_workers=0)
  timer = StepTimer()
  curve = LearningCurve(curve_pairs, tokenizer, scale.cutoff, scale.eval_batch,
                        scale.curve_every, os.path.join(out, "curve.jsonl"))
  trainer = trl.RewardTrainer(model=model, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer, curve],
                              peft_config=lora_config(scale) if scale.lora_rank else None)
  if len(trainer.train_dataset) != len(pairs):  # RewardConfig.max_length drops, never cuts
    raise RuntimeError(f"TRL dropped {len(pairs) - len(trainer.train_dataset)} of {len(pairs)} "
                       f"pairs longer than {scale.cutoff} tokens: every row must train on the "
                       "same pairs")
  trainer.train(resume_from_checkpoint=transformers.trainer_utils.get_last_checkpoint(
      args.output_dir) if os.path.isdir(args.output_dir) else None)
  trained = trainer.model
  if scale.lora_rank:
    trained = trained.merge_and_unload()
  model_dir = os.path.join(out, "model")
  trained.save_pretrained(model_dir)
  tokenizer.save_pretrained(model_dir)
  seconds = timer.seconds[1:]  # the first step warms up kernels; the median as GRAM's rows
  result = {"key": key, "model_dir": model_dir, "steps": steps, "pairs": len(pairs),
            "curve": curve.points, "code": code,
            "pairs_per_second": scale.pairs_per_step / float(np.median(seconds))
            if seconds else float("nan")}
  with open(done, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  return result


def evaluate_peer(model_dir: str, files: dict[str, str], scale: Any, out: str
                  ) -> tuple[dict, dict]:
  """The trained peer scored on every file by evaluate's rules (cached per file by the
  evaluate stage's own work key); each set's summary and per-record results."""
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      model_dir, dtype=torch.float32)
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  judge = ScalarRewardModel(model, tokenizer, scale.cutoff, scale.eval_batch)
  folders = evaluate.output_names(list(files.values()))
  work = {"model": model_dir, "weights": _key(os.path.join(model_dir, "model.safetensors"))}
  summaries, results = {}, {}
  for (name, path), folder in zip(files.items(), folders):
    summaries[name] = evaluate.evaluate_file(judge, path, "auto", os.path.join(out, folder),
                                             work)
    with open(os.path.join(out, folder, "results.jsonl"), encoding="utf-8") as f:
      results[name] = [json.loads(line) for line in f]
  return summaries, results


def _key(*parts: Any) -> str:
  """Files by their content, everything else by its JSON."""
  digest = hashlib.sha256()
  for part in parts:
    if isinstance(part, str) and os.path.isfile(part):
      with open(part, "rb") as f:
        digest.update(hashlib.sha256(f.read()).digest())
    else:
      digest.update(json.dumps(part, sort_keys=True).encode())
  return digest.hexdigest()
