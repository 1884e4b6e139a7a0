"""A stage that reads a saved model (evaluate, best_of_n, serve, self-training's judges and
prover) runs it with the compute dtype and attention kernel its start-up line names, not
with those the model was saved with."""
import importlib.util
import json
import os
import re

import pytest

from gram_jax import configlib, pretrained
from gram_jax.inference import reward as reward_module
from gram_jax.stages import best_of_n, evaluate, self_train_job
from gram_jax.stages import serve as serve_stage
from tests.helpers import hf_fixtures
from tests.helpers.cli import ROOT


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  """A model saved with the default kernel ("auto", blocks 256) in float32."""
  path = str(tmp_path_factory.mktemp("saved"))
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  return path


@pytest.fixture
def loaded(monkeypatch):
  """The config of every model a stage loads, as it runs."""
  configs = []

  def spy(load):
    def recorded(*args, **kwargs):
      model = load(*args, **kwargs)
      configs.append(model.config)
      return model
    return recorded
  monkeypatch.setattr(pretrained, "load_pretrained", spy(pretrained.load_pretrained))
  monkeypatch.setattr(reward_module, "load_pretrained", spy(reward_module.load_pretrained))
  return configs


def _config(stage, tmp_path, model):
  spec = importlib.util.spec_from_file_location(stage, os.path.join(ROOT, "configs",
                                                                    f"{stage}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.workdir, c.model.path = str(tmp_path / "run"), model
  c.model.attention, c.model.attention_block_q, c.model.attention_block_kv = "xla", 64, 32
  return c


def _agree(c, configs):
  """Every loaded model runs as the start-up line says."""
  line = configlib.describe(c, f"configs/{c.stage}.py")
  dtype, kernel = re.search(r"compute (\S+), attention (\S+) \|", line).groups()
  assert configs, "no model was loaded"
  for config in configs:
    assert (config.dtype, config.attention) == (dtype, kernel) == ("float32", "xla")
    assert (config.attention_block_q, config.attention_block_kv) == (64, 32)


PAIRS = [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
         {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "A car."}]


def test_evaluate_runs_the_kernel_it_names(saved_model, loaded, tmp_path):
  c = _config("evaluate", tmp_path, saved_model)
  c.eval.files = str(tmp_path / "pairs.json")
  (tmp_path / "pairs.json").write_text(json.dumps(PAIRS))
  evaluate.run(c)
  _agree(c, loaded)


def test_best_of_n_runs_the_kernel_it_names(saved_model, loaded, tmp_path):
  c = _config("best_of_n", tmp_path, saved_model)
  c.best_of_n.input = str(tmp_path / "candidates.json")
  c.best_of_n.output = str(tmp_path / "winners.jsonl")
  (tmp_path / "candidates.json").write_text(json.dumps(
      [{"prompt": "What is 2 + 2?", "responses": ["4", "5", "22"]}]))
  best_of_n.run(c)
  _agree(c, loaded)


def test_serve_runs_the_kernel_it_names_for_the_judge_and_the_reference(saved_model, loaded,
                                                                         tmp_path):
  c = _config("serve", tmp_path, saved_model)
  c.serve.warm_up, c.serve.reference_model = False, saved_model
  server = serve_stage.build_server(c)
  assert server.reference is not None and len(loaded) == 2
  _agree(c, loaded)


def test_self_training_judges_run_the_kernel_it_names(saved_model, loaded, tmp_path):
  c = _config("self_train", tmp_path, "")
  job = self_train_job.SelfTrainJob(c)
  job.policy_judge(saved_model)
  job.measure_verdict_model(saved_model, [("What is 2 + 2?", "4", "5")])
  assert len(loaded) == 2
  _agree(c, loaded)
