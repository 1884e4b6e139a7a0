"""Start-up checks of single config fields: each rule names its field and what is wrong, a
stage is checked on the sections it has, and every rule names a field some stage defines."""
import importlib.util
import os

import pytest

from gram_jax import configlib
from gram_jax.config.rules import field_value
from gram_jax.config.train import rows_per_process
from gram_jax.errors import GramError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stage_config(stage: str, preset: str = ""):
  spec = importlib.util.spec_from_file_location(stage, os.path.join(ROOT, "configs",
                                                                    f"{stage}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def test_every_rule_names_a_field_that_a_stage_config_defines():
  configs = [stage_config(stage) for stage in configlib.STAGES]
  for path in configlib.FIELD_RULES:
    defined = []
    for c in configs:
      try:
        defined.append(field_value(c, path))
      except KeyError:
        pass
    assert defined, path
    assert all(configlib.FIELD_RULES[path](value) is None for value in defined), path


@pytest.mark.parametrize("stage, path, value, message", [
    ("pretrain", "model.remat", "some", "config.model.remat: 'some' not in ('none', 'full', "
                                        "'dots')"),
    ("evaluate", "eval.max_pairs", -1, "config.eval.max_pairs: must be >= 0 (0: every "
                                       "record), got -1"),
    ("finetune", "train.label_smoothing", 1.0, "config.train.label_smoothing: must be in "
                                               "[0.0, 1.0), got 1.0"),
    ("self_train", "self_train.min_vote_share", 0.4, "config.self_train.min_vote_share: must "
                                                     "be in [0.5, 1.0], got 0.4"),
    ("best_of_n", "best_of_n.method", "best", "config.best_of_n.method: 'best' not in "
                                              "('linear', 'knockout', 'round_robin', "
                                              "'bradley_terry')"),
    # a NaN learning rate trained to NaN with exit 0; -5 steps trained silently
    ("finetune", "train.learning_rate", float("nan"), "config.train.learning_rate: must be a "
                                                      "finite number > 0, got nan"),
    ("finetune", "train.num_steps", -5, "config.train.num_steps: must be >= 1, or -1 (unset), "
                                        "got -5"),
    ("pretrain", "model.lora.alpha", float("inf"), "config.model.lora.alpha: must be a finite "
                                                   "number > 0, got inf"),
    ("self_train", "self_train.round_learning_rate", 0.0, "config.self_train.round_learning_"
                                                          "rate: must be a finite number > 0, "
                                                          "got 0.0"),
])
def test_a_wrong_value_is_refused_naming_its_field(tmp_path, stage, path, value, message):
  c = stage_config(stage)
  c.workdir = str(tmp_path)
  section, name = path.rsplit(".", 1)
  field_value(c, section)[name] = value
  with pytest.raises(GramError) as refused:
    configlib.validate(c)
  assert str(refused.value) == message


def test_a_stage_is_not_checked_on_sections_it_does_not_have(tmp_path):
  c = stage_config("pretrain")
  c.workdir = str(tmp_path)
  assert "self_train" not in c and "best_of_n" not in c
  configlib.validate(c)
  with pytest.raises(KeyError):
    field_value(c, "self_train.export")


@pytest.mark.parametrize("stage, kept", [
    ("finetune", "template.judge='compact', train.learning_rate=0.003, train.num_steps=400, "
                 "data.cutoff_len=64"),
    ("pretrain", "train.learning_rate=0.001, data.cutoff_len=256"),
    ("prover", "train.learning_rate=0.003, train.num_steps=250, data.cutoff_len=192"),
    ("self_train", "template.judge='compact_rr', data.cutoff_len=160, "
                   "self_train.learning_rate=0.003, self_train.round_learning_rate=0.001"),
])
def test_a_real_model_never_inherits_the_demo_recipe(tmp_path, stage, kept):
  c = stage_config(stage)
  c.workdir = str(tmp_path / "run")
  c.model.path = str(tmp_path)  # any model directory: the check comes before loading it
  with pytest.raises(GramError) as refused:
    configlib.validate(c)
  assert str(refused.value) == (
      f"config.model.path: configs/{stage}.py without a preset is the demo recipe for a tiny "
      f"model from scratch, and this run would keep its {kept}; name a preset for a real model "
      f"(--config=configs/{stage}.py:smollm2-135m; presets: qwen3-1.7b, qwen3-4b, qwen3-8b, "
      "qwen3-14b, llama3.2-3b, llama3.1-8b, smollm2-135m, gemma3-270m) or set those fields")


def test_the_demo_recipe_trains_a_model_from_scratch_and_a_preset_a_real_one(tmp_path):
  demo = stage_config("finetune")
  demo.workdir = str(tmp_path / "demo")
  configlib.validate(demo)  # no model.path: the tiny model from scratch
  real = stage_config("finetune", "qwen3-8b")
  real.workdir, real.model.path = str(tmp_path / "real"), str(tmp_path)
  configlib.validate(real)
  # The paper's stage-2 settings, not the demo's.
  assert (real.template.judge, real.train.learning_rate, real.data.cutoff_len) == \
      ("gram", 2e-5, 2048)
  # Every demo value set by the user is a choice, not an inherited default.
  chosen = stage_config("finetune")
  chosen.workdir, chosen.model.path = str(tmp_path / "chosen"), str(tmp_path)
  chosen.template.judge, chosen.train.learning_rate = "gram", 1e-4
  chosen.train.num_steps, chosen.data.cutoff_len = 125, 48
  configlib.validate(chosen)


def test_balanced_steps_need_both_orders(tmp_path):
  c = stage_config("finetune")
  c.workdir = str(tmp_path)
  c.data.balanced_steps, c.data.both_orders = True, False
  with pytest.raises(GramError, match="balanced_steps .* needs config.data.both_orders=true"):
    configlib.validate(c)


def test_balanced_steps_are_the_default_for_verdict_data():
  """The measured default (BENCHMARKS.md): both orders of a pair in one step."""
  c = stage_config("finetune")
  assert c.data.both_orders and c.data.balanced_steps


def test_a_run_resumes_under_the_fields_that_change_what_it_trains():
  fields = configlib.result_fields(stage_config("finetune"))
  assert {"train.learning_rate", "train.num_steps", "data.train_files", "seed",
          "train.label_smoothing", "model.lora.rank"} <= set(fields)
  assert not {"workdir", "train.micro_batches", "checkpoint.every_steps", "eval.files",
              "model.remat", "mesh.fsdp", "rules"} & set(fields)


def test_a_batch_the_host_cannot_hold_is_refused_before_numpy_tries():
  c = stage_config("finetune")
  c.train.per_device_batch_size = 10 ** 12
  with pytest.raises(GramError, match=r"config.train: a step of [\d,]+ rows x \d+ positions "
                     r"per process needs [\d,.]+ GiB of host memory for its tokens alone"):
    rows_per_process(c)


def test_a_copied_run_directory_resumes_with_paths_inside_it_moved(tmp_path):
  """A run copied elsewhere (a self-training job's sub-run names the job's tokenizer and
  rounds by absolute path) still resumes; a path that changed inside it does not."""
  import json
  from gram_jax import checkpoint
  from gram_jax.models.config import tiny_config
  from gram_jax.training import resume
  old, new = tmp_path / "old" / "prover", tmp_path / "new" / "prover"
  (new / "checkpoints" / "5").mkdir(parents=True)
  (new / checkpoint.MODEL_CONFIG).write_text(json.dumps(tiny_config("qwen3").to_dict()))
  (new / checkpoint.RUN_CONFIG).write_text(json.dumps({
      "workdir": str(old), "tokenizer": {"path": str(tmp_path / "old" / "tokenizer")},
      "data": {"train_files": "/data/pairs.jsonl"}}))
  fields = {"tokenizer.path": str(tmp_path / "new" / "tokenizer"),
            "data.train_files": "/data/pairs.jsonl"}
  resume.check_resumable(str(new), tiny_config("qwen3"), fields)
  with pytest.raises(GramError, match=r"other settings \(tokenizer.path .*old/tokenizer\" -> "
                     r".*new/other\"\)"):
    resume.check_resumable(str(new), tiny_config("qwen3"),
                               {**fields, "tokenizer.path": str(tmp_path / "new" / "other")})


def test_every_section_s_rules_name_fields_of_its_own_defaults():
  """A section's rules sit beside its defaults: each rule of a section module names a field
  that the module's own defaults define, and every rule is some section's."""
  import ml_collections
  from gram_jax.config import (best_of_n, data, evaluation, model, self_train, serve,
                               train)
  sections = {model: [model.add_defaults], data: [data.add_defaults],
              train: [train.add_defaults, train.add_checkpoint_defaults],
              evaluation: [evaluation.add_defaults], serve: [serve.add_defaults],
              self_train: [self_train.add_defaults], best_of_n: [best_of_n.add_defaults]}
  owned = {"stage"}
  for section, add_defaults in sections.items():
    c = ml_collections.ConfigDict()
    for add in add_defaults:
      add(c)
    for path in section.RULES:
      field_value(c, path)  # KeyError: a rule away from its defaults
    owned |= set(section.RULES)
  assert owned == set(configlib.FIELD_RULES)
