"""GRAM-R² preference-proving model π_ψ: LM loss on a rationale given the pair and its label.

Seed records are {prompt, response_a, response_b, label, rationale} (strong-LLM or hand-written
proofs); the default is the built-in task with its templated proofs. The trained prover writes
rationales for labels it is given, which self-training turns into reward-model targets.
"""
import ml_collections

from gram_jax.config.data import builtin_tasks
from gram_jax.data import synthetic
from gram_jax.stages import common, recipes


def seed_files(c: ml_collections.ConfigDict) -> list[str]:
  pairs = lambda: synthetic.make_pairs(c.data.builtin_pairs, c.seed, builtin_tasks(c))
  return common.files_or_builtin(c, c.data.train_files, {
      "seed_proofs.jsonl": lambda: synthetic.as_proved(pairs(), c.seed)})


def run(c: ml_collections.ConfigDict) -> None:
  tokenizer = common.load_or_build_tokenizer(c)
  recipes.train_on_proofs(c, tokenizer, seed_files(c), recipes.prover_encoder(c, tokenizer),
                          c.workdir)
