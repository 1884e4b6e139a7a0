"""A finished evaluation is reused only for the same weights: replacing the weights under the
same `model.path` evaluates again (it answered "already evaluated" with the old table)."""
import json
import logging

from gram_jax import journal, pretrained
from gram_jax.data import synthetic
from gram_jax.stages import evaluate
from tests.helpers import hf_fixtures
from tests.unit.test_config_rules import stage_config


def test_replaced_weights_under_the_same_path_are_evaluated_again(tmp_path, caplog):
  model = str(tmp_path / "model")
  hf_fixtures.make_hf_model("llama_untied", model, seed=0, with_tokenizer=True)
  data = journal.write_jsonl(synthetic.make_pairs(6, seed=5), str(tmp_path / "pairs.jsonl"))
  c = stage_config("evaluate")
  c.workdir, c.model.path, c.eval.files = str(tmp_path / "eval"), model, data
  c.eval.batch_size, c.eval.max_len, c.template.judge = 4, 256, "compact"
  summary = lambda: json.load(open(tmp_path / "eval" / "pairs" / "summary.json"))
  scores = lambda: [json.loads(line)["score_chosen"]
                    for line in open(tmp_path / "eval" / "pairs" / "results.jsonl")]
  evaluate.run(c)
  first, first_scores = summary(), scores()
  assert first["work"]["weights"] == pretrained.weights_version(model)
  with caplog.at_level(logging.INFO):
    evaluate.run(c)  # the same weights: reused
  assert "already evaluated" in caplog.text
  caplog.clear()

  hf_fixtures.make_hf_model("llama_untied", model, seed=1)  # new weights, same path
  with caplog.at_level(logging.INFO):
    evaluate.run(c)
  assert "already evaluated" not in caplog.text
  assert summary()["work"]["weights"] != first["work"]["weights"]
  assert scores() != first_scores
