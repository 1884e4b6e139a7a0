"""Tokenizer loading, chat-template rendering, verdict-label checks, and a small trainable BPE.

The trainable tokenizer exists so tests and the built-in demo need no download: it is a
byte-level BPE in tokenizer.json form, with a ChatML chat template, loadable by AutoTokenizer.
"""
import os
from typing import Any, Iterable, Sequence

from gram_jax.errors import GramError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL_TOKENS = ("<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")


def load_tokenizer(path: str) -> Any:
  """AutoTokenizer from an HF directory, or from a gram_jax checkpoint's tokenizer/ folder."""
  import transformers
  nested = os.path.join(path, "tokenizer")
  if os.path.isdir(nested):
    path = nested
  try:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
  except (OSError, ValueError) as e:
    raise GramError(f"{path}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
  if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
  return tokenizer


def label_token_ids(tokenizer: Any, labels: Sequence[str] = ("A", "B")) -> list[int]:
  """Token id of each verdict label; every label must be exactly one token."""
  ids = []
  for label in labels:
    encoded = tokenizer.encode(label, add_special_tokens=False)
    if len(encoded) != 1:
      pieces = tokenizer.convert_ids_to_tokens(encoded)
      raise GramError(f"verdict label {label!r} is {len(encoded)} tokens {pieces} for this "
                      "tokenizer; labels must be single tokens (set config.template.labels)")
    ids.append(encoded[0])
  return ids


def render_user_turn(tokenizer: Any, message: str, chat_template: str | None = None) -> str:
  """Wraps one user message with the chat template and the assistant generation prompt."""
  template = chat_template or getattr(tokenizer, "chat_template", None)
  if not template:
    raise GramError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat "
                    "template; set config.template.chat_template")
  return tokenizer.apply_chat_template(
      [{"role": "user", "content": message}], chat_template=template, tokenize=False,
      add_generation_prompt=True, enable_thinking=False)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512,
                        chat_template: str = CHATML_TEMPLATE) -> Any:
  """Trains a byte-level BPE on `texts` and wraps it as a transformers fast tokenizer."""
  import tokenizers
  import transformers
  from tokenizers import decoders, models, pre_tokenizers, trainers
  bpe = tokenizers.Tokenizer(models.BPE())
  bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  bpe.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  bpe.train_from_iterator(texts, trainer)
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_object=bpe, pad_token="<|pad|>", eos_token="<|im_end|>",
      bos_token="<|endoftext|>", unk_token=None)
  tokenizer.chat_template = chat_template
  return tokenizer
