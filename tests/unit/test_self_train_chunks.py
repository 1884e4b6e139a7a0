"""The self-training stage's per-chunk algorithms as top-level functions: π_ψ proving a chunk
(best of k, paper Eq. 5), π_φ's judgments of a chunk turned into pseudo-label rows, and the
keep-the-most-confident-fraction rule (a row's own rules: test_self_train_parts.py); and a
runaway generated proof skipped, where a user's stops the run."""
import json

import pytest

import gram_jax
from gram_jax import configlib, pseudo_labels
from gram_jax.data.records import UnlabeledPair
from gram_jax.errors import GramError
from gram_jax.inference import proving
from gram_jax.inference.generate import Generator, Sampling
from gram_jax.inference.reasoning import Judgment, PairJudgment
from gram_jax.stages import recipes, self_train_job
from gram_jax.text import templates
from gram_jax.text import tokenizer as tok
from gram_jax.training import loop
from tests.helpers import hf_fixtures

RULES = pseudo_labels.LabelRules(("A", "B"), "answer_tag", 200, 0.5, 0.6)


def _reply(letter: str) -> str:
  return f"<think>\nResponse {letter} names a fruit.\n</think>\n<answer>{letter}</answer>"


def _judgment(letter: str | None, swapped: bool, p_first: float) -> Judgment:
  reply = _reply(letter) if letter else "I am not sure."
  return Judgment(swapped, reply, "", letter, (p_first, 1 - p_first))


PAIR = UnlabeledPair("Name one fruit.", "pear", "chair", "pool:1", {"gold": "A"})


def test_label_pairs_judges_the_chunk_with_its_seed_and_position():
  calls = []

  class Judge:
    def judge_batch(self, triples, sampling, seed, first_index, samples):
      calls.append((triples, sampling, seed, first_index, samples))
      return [PairJudgment((_judgment("A", False, 0.9), _judgment("B", True, 0.1)))
              for _ in triples]

  sampling = Sampling(temperature=0.7)
  rows = self_train_job.label_pairs(Judge(), [PAIR, PAIR], 6, sampling=sampling, seed=11,
                                samples=3, rules=RULES)
  assert calls == [([("Name one fruit.", "pear", "chair")] * 2, sampling, 11, 6, 3)]
  assert [r["label"] for r in rows] == ["A", "A"]


def test_keeping_the_most_confident_fraction_drops_the_rest_for_low_confidence():
  rows = [{"confidence": c, "drop_reason": d} for c, d in
          ((0.9, None), (0.6, None), (0.99, "tie"), (0.8, None))]
  kept = pseudo_labels.keep_top_fraction(rows, 0.5)
  assert [r["drop_reason"] for r in kept] == [None, "low_confidence", "tie", None]
  assert rows[1]["drop_reason"] is None  # the input rows are not changed


def test_proving_in_chunks_equals_proving_at_once(tmp_path):
  path = str(tmp_path / "prover")
  hf_fixtures.make_hf_model("qwen3", path, with_tokenizer=True)
  tokenizer = tok.load_tokenizer(path)
  generator = Generator(gram_jax.load_pretrained(path), tokenizer, batch_size=4,
                        max_prompt_len=256)
  items = [{"prompt": f"Question {i}?", "response_a": "yes", "response_b": "no",
            "label": "AB"[i % 2]} for i in range(3)]
  settings = dict(k=2, max_new_tokens=6, sampling=Sampling(temperature=1.0), seed=3,
                  context=proving.empty_context(tokenizer))
  prompts = proving.prover_prompts(tokenizer, templates.PROVER_PROMPT, 256)
  whole = proving.proved_rows(generator, prompts, items, 0, **settings)
  chunked = (proving.proved_rows(generator, prompts, items[:2], 0, **settings) +
             proving.proved_rows(generator, prompts, items[2:], 2, **settings))
  assert whole == chunked
  assert all(row.items() >= item.items() and row["prompt_trimmed"] is False
             for row, item in zip(whole, items))
  assert all(row["rationale"] for row in whole)


def _proof_file(tmp_path, rationales):
  path = tmp_path / "proofs.jsonl"
  path.write_text("".join(json.dumps({"prompt": "Name one fruit.", "response_a": "pear",
                                      "response_b": "chair", "label": "A", "rationale": r}) + "\n"
                          for r in rationales))
  return str(path)


def _proof_training(tmp_path, monkeypatch, rationales, generated):
  """Which examples reach the trainer when the policy encoder refuses the runaway proofs."""
  c = configlib.base_config("self_train")
  c.workdir = str(tmp_path / "run")
  c.data.cutoff_len = c.data.seq_len = 4096  # the GRAM-RR prompt with the test tokenizer
  reached = []
  monkeypatch.setattr(loop, "fit", lambda c, mesh, config, tokenizer, batches, *a, **k:
                      reached.append(len(batches.data)))

  def encoder(fields, where):
    if "runaway" in fields["rationale"]:
      raise GramError(f"{where}: cannot fit into config.data.cutoff_len=160 tokens")
    return recipes.policy_encoder(c, hf_fixtures.build_tokenizer())(fields, where)
  run = lambda: recipes.train_on_proofs(c, hf_fixtures.build_tokenizer(),
                                        [_proof_file(tmp_path, rationales)], encoder,
                                        c.workdir, generated=generated)
  return run, reached


def test_generated_proofs_that_cannot_fit_are_skipped_and_a_user_s_stop_the_run(
    tmp_path, monkeypatch):
  rationales = ["Response A names a fruit.", "runaway " * 50, "A pear is a fruit."]
  run, reached = _proof_training(tmp_path, monkeypatch, rationales, generated=True)
  run()
  assert reached == [2]  # the runaway proof skipped, the other two trained on
  run, reached = _proof_training(tmp_path, monkeypatch, rationales, generated=False)
  with pytest.raises(GramError, match="proofs.jsonl:2: cannot fit"):
    run()
  run, reached = _proof_training(tmp_path, monkeypatch, ["runaway"], generated=True)
  with pytest.raises(GramError, match="no example fits config.data.cutoff_len"):
    run()
