"""Tiny random transformers models and tokenizers built inside the tests (no downloads)."""
import os

import numpy as np
import torch
import transformers

from gram_jax.text import tokenizer as tok

VOCAB = 320
TOKENIZER_TEXT = [
    "Please act as an impartial judge and evaluate the quality of the responses.",
    "[User Question] What is the capital of France? [The Start of Assistant A's Answer]",
    "Paris is the capital. The answer is 4. Response A is better than response B.",
    "#Preferred: A", "#Preferred: B", "<think> Feedback: Comparision: Conclusion: </think>",
]

FAMILIES = {
    # name: (config class, extra kwargs)
    "llama3_tied": (transformers.LlamaConfig, dict(
        tie_word_embeddings=True, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
        rope_theta=500000.0)),
    "llama_untied": (transformers.LlamaConfig, dict(tie_word_embeddings=False)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=False, rope_theta=1e6)),
    "qwen3": (transformers.Qwen3Config, dict(tie_word_embeddings=True, head_dim=16)),
    # A window shorter than the test rows, a local and a global layer with their own RoPE
    # bases, and a query scalar that is not head_dim.
    "gemma3": (transformers.Gemma3TextConfig, dict(
        head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"],
        query_pre_attn_scalar=12, rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})),
}


# Gemma's turn markup, as the chat template of Gemma 1 and 2 writes it: a system turn is an
# error (Gemma 3 270M's GGUF, a base model, carries no template).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' "
    "+ message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")


def build_tokenizer():
  return tok.train_bpe_tokenizer(TOKENIZER_TEXT * 4, vocab_size=VOCAB)


def save_tokenizer(out_dir: str) -> str:
  build_tokenizer().save_pretrained(out_dir)
  return out_dir


def make_hf_model(name: str, out_dir: str | None = None, seed: int = 0, vocab: int = VOCAB,
                  hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                  with_tokenizer: bool = False) -> transformers.PreTrainedModel:
  """A random float32 model of a family; weights are scaled up so differences are visible."""
  config_cls, extra = FAMILIES[name]
  config = config_cls(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden + 8,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=3, pad_token_id=0, **extra)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config).eval()
  with torch.no_grad():
    for pname, param in model.named_parameters():
      if "norm" in pname:
        param.copy_(1.0 + 0.1 * torch.randn_like(param))
      else:
        param.copy_(0.15 * torch.randn_like(param))
  if out_dir:
    model.save_pretrained(out_dir)
    if with_tokenizer:
      save_tokenizer(out_dir)
  return model


def padded_batch(seed: int = 0, vocab: int = VOCAB, lengths=(9, 5, 12, 7), total: int = 12,
                 left: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Token ids and attention mask with rows padded on the left (or right)."""
  rng = np.random.RandomState(seed)
  ids = np.zeros((len(lengths), total), np.int64)
  mask = np.zeros_like(ids)
  for row, n in enumerate(lengths):
    span = slice(total - n, total) if left else slice(0, n)
    ids[row, span] = rng.randint(4, vocab, n)
    mask[row, span] = 1
  return ids, mask


def hf_logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """transformers logits with positions that skip padding (what generate() uses)."""
  positions = np.maximum(mask.cumsum(-1) - 1, 0)
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(positions))
  return out.logits.float().numpy()


def read_safetensors_dir(path: str) -> dict[str, torch.Tensor]:
  from safetensors.torch import load_file
  tensors = {}
  for name in sorted(os.listdir(path)):
    if name.endswith(".safetensors"):
      tensors.update(load_file(os.path.join(path, name)))
  return tensors
