"""GRAM stage 1: unsupervised pair pre-training (causal-LM loss on the two responses).

The model learns to generate a pair of responses to a question, with the prompt masked.
Default data: the built-in synthetic pairs; give `--config.data.train_files=...` for real data
(official GRAM pre-training rows or {prompt, response_a, response_b} rows).
"""
import ml_collections

from gram_jax.config.data import builtin_tasks
from gram_jax.config.template import chat_template
from gram_jax.data import encode, preference, synthetic
from gram_jax.stages import common, recipes


def train_files(c: ml_collections.ConfigDict) -> list[str]:
  pairs = lambda: synthetic.make_pairs(c.data.builtin_pairs, c.seed, builtin_tasks(c))
  return common.files_or_builtin(c, c.data.train_files, {
      "pretrain_pairs.jsonl": lambda: synthetic.as_unlabeled(pairs(), seed=c.seed)})


def run(c: ml_collections.ConfigDict) -> None:
  tokenizer = common.load_or_build_tokenizer(c)
  encoder = encode.pretrain_encoder(tokenizer, c.data.cutoff_len, chat_template(c))
  recipes.train_lm(c, tokenizer, train_files(c), preference.parse_unlabeled, encoder,
                   c.workdir)
