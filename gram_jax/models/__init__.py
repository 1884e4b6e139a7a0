from gram_jax.models.config import ModelConfig, tiny_config
from gram_jax.models.decoder import Decoder
