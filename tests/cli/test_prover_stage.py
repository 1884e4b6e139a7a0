"""Stage prover: learns to write a proof in the released format for the label it is given."""
import json
import os

import pytest

import gram_jax
from gram_jax import GramError, pretrained
from gram_jax.data import rationales, synthetic
from gram_jax.inference.generate import Generator
from gram_jax.text import rationale, templates
from gram_jax.text import tokenizer as tok
from gram_jax.training.metrics import read_jsonl_metrics
from tests.helpers import cli


def test_prover_learns_to_prove_the_given_label(tmp_path):
  workdir = str(tmp_path / "prover")
  result = cli.run_main("configs/prover.py", f"--config.workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  losses = read_jsonl_metrics(os.path.join(workdir, "train_metrics.jsonl"))
  assert losses[max(losses)]["loss"] < 0.2 * losses[1]["loss"]
  tokenizer = pretrained.load_tokenizer(workdir)
  generator = Generator(gram_jax.load_pretrained(workdir), tokenizer, batch_size=8,
                        max_prompt_len=192)
  seeds = [json.loads(l) for l in open(os.path.join(workdir, "data", "seed_proofs.jsonl"))]
  seen = {synthetic.pair_key(r["prompt"], r["response_a"], r["response_b"]) for r in seeds}
  rows = [r for r in synthetic.as_proved(synthetic.make_pairs(40, 4242, ("category",)), 4242)
          if synthetic.pair_key(r["prompt"], r["response_a"], r["response_b"]) not in seen][:8]
  for row in rows:  # ask for the wrong label too: a prover proves what it is told
    row["label"] = "B" if row["label"] == "A" else "A"
  prompts = tok.encode_user_turns(tokenizer, templates.PROVER_PROMPT, [
      {"input": r["prompt"], "response_a": r["response_a"], "response_b": r["response_b"],
       "label": r["label"]} for r in rows])
  proofs = generator.generate(prompts, 96)
  for row, proof in zip(rows, proofs):
    assert proof.finish_reason == "eos"
    assert proof.text.startswith("Feedback:") and "Comparision:" in proof.text
    assert f"Conclusion:\nResponse {row['label']} is better." in proof.text
    target = rationale.format_target(proof.text, row["label"])
    assert rationale.parse(target).verdict == row["label"]


def test_seed_records_are_validated():
  good = {"prompt": "q", "response_a": "a", "response_b": "b", "label": "A", "rationale": "r"}
  assert rationales.parse_proved_pair(good, "s:1").label == "A"
  with pytest.raises(GramError, match="s:2: field 'label'"):
    rationales.parse_proved_pair({**good, "label": "C"}, "s:2")
  with pytest.raises(GramError, match="s:3: field 'rationale': empty"):
    rationales.parse_proved_pair({**good, "rationale": " "}, "s:3")
