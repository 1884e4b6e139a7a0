"""Start-up checks of single config fields: each rule names its field and what is wrong, a
stage is checked on the sections it has, and every rule names a field some stage defines."""
import importlib.util
import os

import pytest

from gram_jax import configlib
from gram_jax.errors import GramError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stage_config(stage: str):
  spec = importlib.util.spec_from_file_location(stage, os.path.join(ROOT, "configs",
                                                                    f"{stage}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_every_rule_names_a_field_that_a_stage_config_defines():
  configs = [stage_config(stage) for stage in configlib.STAGES]
  for path in configlib.FIELD_RULES:
    defined = []
    for c in configs:
      try:
        defined.append(configlib.field_value(c, path))
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
])
def test_a_wrong_value_is_refused_naming_its_field(tmp_path, stage, path, value, message):
  c = stage_config(stage)
  c.workdir = str(tmp_path)
  section, name = path.rsplit(".", 1)
  configlib.field_value(c, section)[name] = value
  with pytest.raises(GramError) as refused:
    configlib.validate(c)
  assert str(refused.value) == message


def test_a_stage_is_not_checked_on_sections_it_does_not_have(tmp_path):
  c = stage_config("pretrain")
  c.workdir = str(tmp_path)
  assert "self_train" not in c and "best_of_n" not in c
  configlib.validate(c)
  with pytest.raises(KeyError):
    configlib.field_value(c, "self_train.export")
