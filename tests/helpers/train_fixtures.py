"""Small trainer set-ups shared by the training tests."""
import ml_collections
import numpy as np

from gram_jax import configlib
from gram_jax.data import encode
from gram_jax.config.train import optimizer_settings
from gram_jax.models.config import tiny_config
from gram_jax.models.decoder import abstract_model
from gram_jax.training import objectives, train_step


def train_config(**train_overrides) -> ml_collections.ConfigDict:
  c = configlib.base_config("pretrain")
  c.train.learning_rate = 1e-3
  c.train.warmup_ratio = 0.0
  # Adam divides by sqrt(v): with eps=1e-8, coordinates whose gradient is ~0 turn float
  # summation-order noise into full-size steps; eps=1e-6 keeps comparisons about the code.
  c.train.eps = 1e-6
  c.train.update(train_overrides)
  return c


def random_dataset(count: int = 64, vocab: int = 96, seed: int = 0) -> encode.TokenizedSet:
  rng = np.random.RandomState(seed)
  examples = []
  for _ in range(count):
    n = rng.randint(6, 20)
    examples.append(encode.Example(rng.randint(1, vocab, n).astype(np.int32),
                                   prompt_len=rng.randint(1, n // 2)))
  return encode.TokenizedSet.build(examples)


def small_model_config():
  return tiny_config("qwen3", vocab_size=96, hidden_size=32, intermediate_size=64, num_heads=4,
                     num_kv_heads=2, head_dim=8)


def make_trainer(mesh, model_config=None, total_steps: int = 10, c=None, lora=None):
  model_config = model_config or small_model_config()
  c = c or train_config()
  graphdef, abstract = abstract_model(model_config)
  tx, schedule = train_step.make_optimizer(optimizer_settings(c), total_steps)
  trainer = train_step.Trainer.create(graphdef, abstract, tx, schedule,
                                      objectives.causal_lm_loss, mesh, tuple(c.rules), lora)
  return trainer, model_config, c
