"""gram_jax: GRAM and GRAM-R² generative reward models in JAX/Flax NNX."""
from gram_jax.errors import GramError
from gram_jax.hf.export import save_pretrained
from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import RELEASE, Reasoning
from gram_jax.models import Decoder, ModelConfig
from gram_jax.pretrained import load_pretrained
