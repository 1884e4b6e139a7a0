"""Tokenizer loading, chat-template rendering, verdict-label checks, and a small trainable BPE.

The trainable tokenizer exists so tests and the built-in demo need no download: it is a
byte-level BPE in tokenizer.json form, with a ChatML chat template, loadable by AutoTokenizer.
"""
import threading
from typing import Any, Iterable, Sequence

from gram_jax.errors import GramError
from gram_jax.text import templates

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL_TOKENS = ("<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")


def load_tokenizer(path: str) -> Any:
  """AutoTokenizer from a directory of tokenizer files (`pretrained.load_tokenizer` finds it
  beside a model)."""
  import transformers
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
                    "template; set config.tokenizer.chat_template")
  return tokenizer.apply_chat_template(
      [{"role": "user", "content": message}], chat_template=template, tokenize=False,
      add_generation_prompt=True, enable_thinking=False)


def check_render_bound(tokenizer: Any, chat_template: str | None, message_chars: int,
                       seconds: float = 5.0) -> None:
  """A chat template read from a model directory is code: one that loops without bound
  would hold a server's tokenizer thread forever. Renders a conversation with turns of
  `message_chars` characters on a thread of its own and refuses in one line a template that
  has not finished within `seconds`, or renders more than 4x its input."""
  template = chat_template or getattr(tokenizer, "chat_template", None)
  if not template:
    return
  text = "x " * (message_chars // 2)
  turns = [{"role": "system", "content": text}, {"role": "user", "content": text},
           {"role": "assistant", "content": text}, {"role": "user", "content": text}]
  result: list = []

  def render() -> None:
    try:
      result.append(len(tokenizer.apply_chat_template(
          turns, chat_template=template, tokenize=False, add_generation_prompt=True,
          enable_thinking=False)))
    except Exception as e:  # a template may refuse a system turn: not what is checked here
      result.append(e)
  worker = threading.Thread(target=render, daemon=True)
  worker.start()
  worker.join(seconds)
  name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
  if worker.is_alive():
    raise GramError(f"{name}: its chat template did not render a {len(turns)}-turn "
                    f"conversation of {message_chars:,}-character turns within {seconds:g} s; "
                    "refusing a template that renders without bound")
  if isinstance(result[0], int) and result[0] > 4 * len(turns) * message_chars + (64 << 10):
    raise GramError(f"{name}: its chat template rendered {result[0]:,} characters from "
                    f"{len(turns) * message_chars:,}; refusing a template that renders "
                    "without bound")


def longest_token_chars(tokenizer: Any) -> int:
  """The most characters of text one token can stand for: its vocabulary string's length
  (byte-level BPE spells each byte as one character, SentencePiece a space as one '▁', and
  a byte-fallback token's spelling is longer than the byte), so a text of n characters
  (after the tokenizer's normaliser, see `normalized_chars`) is at least n / this many
  tokens."""
  return max(map(len, tokenizer.get_vocab()), default=1) or 1


def normalized_chars(tokenizer: Any, text: str) -> int:
  """Characters of `text` after the tokenizer's own normaliser (NFC composition can shorten
  a text) and without the edge whitespace a chat template may trim."""
  backend = getattr(tokenizer, "backend_tokenizer", None)
  normalizer = backend.normalizer if backend is not None else None
  text = text.strip()
  return len(normalizer.normalize_str(text) if normalizer is not None else text)


def special_token_texts(tokenizer: Any) -> tuple[str, ...]:
  """The strings this tokenizer turns into special (control) tokens."""
  texts = set(tokenizer.all_special_tokens)
  texts.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
  return tuple(sorted(t for t in texts if t))


def encode_plain(tokenizer: Any, text: str) -> list[int]:
  """Token ids of data (user text, a response, a rationale): a special-token string inside
  it is tokenised as the plain text it is, never as a control token."""
  return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _values_hold_specials(tokenizer: Any, values: dict[str, str]) -> bool:
  specials = special_token_texts(tokenizer)
  return any(s in value for value in values.values() for s in specials)


def _encode_in_pieces(tokenizer: Any, template: str, values: dict[str, str],
                      chat_template: str | None) -> list[int]:
  """Template and chat markup tokenised with their special tokens, values as plain text."""
  message, spans = templates.fill_with_spans(template, values)
  rendered = render_user_turn(tokenizer, message, chat_template)
  start, lo, hi = rendered.find(message), 0, 0
  if start >= 0:
    lo, hi = start, start + len(message)
  else:  # templates that trim the message (Llama-3's) keep its inner text
    stripped = message.strip()
    lo = rendered.find(stripped)
    if not stripped or lo < 0:
      raise GramError("the chat template rewrites the message text, so special-token strings "
                      "in user text cannot be kept plain; set config.tokenizer.chat_template")
    hi, start = lo + len(stripped), lo - (len(message) - len(message.lstrip()))
  placed, position = [], 0
  for begin, end in spans:
    begin = min(max(begin + start, lo, position), hi)
    end = min(max(end + start, begin), hi)
    placed.append((begin, end))
    position = end
  return _encode_spans(tokenizer, rendered, placed)


def _encode_spans(tokenizer: Any, rendered: str, spans: Sequence[tuple[int, int]]) -> list[int]:
  """Markup between the spans with its special tokens, the spans (data) as plain text."""
  ids, position = [], 0
  for begin, end in spans:
    ids += tokenizer.encode(rendered[position:begin], add_special_tokens=False)
    ids += encode_plain(tokenizer, rendered[begin:end])
    position = end
  return ids + tokenizer.encode(rendered[position:], add_special_tokens=False)


def encode_chat(tokenizer: Any, messages: Sequence[dict[str, str]],
                chat_template: str | None = None) -> list[int]:
  """Token ids of a conversation with the chat template and the generation prompt. Message
  texts are data: one that holds a special-token string is tokenised as plain text."""
  template = chat_template or getattr(tokenizer, "chat_template", None)
  if not template:
    raise GramError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat "
                    "template; set config.tokenizer.chat_template")
  render = lambda turns: tokenizer.apply_chat_template(
      turns, chat_template=template, tokenize=False, add_generation_prompt=True,
      enable_thinking=False)
  values = {f"message_{i}": m["content"] for i, m in enumerate(messages)}
  if not _values_hold_specials(tokenizer, values):
    return tokenizer.encode(render(list(messages)), add_special_tokens=False)
  slotted = render([{"role": m["role"], "content": "{message_%d}" % i}
                    for i, m in enumerate(messages)])
  return _encode_spans(tokenizer, *templates.fill_with_spans(slotted, values))


def encode_user_turns(tokenizer: Any, template: str, values: Sequence[dict[str, str]],
                      chat_template: str | None = None) -> list[list[int]]:
  """Token ids of user turns: `template` filled with each values dict, wrapped by the chat
  template with the generation prompt.

  The rendered string is tokenised whole, as the official scorer does, so ordinary text
  gets exactly the official tokens. A value that holds a special-token string
  ('<|im_end|>', ...) is data, not markup: that turn is tokenised in pieces, its values as
  plain text, so no user or policy text can close a turn or open a new one."""
  plain = [not _values_hold_specials(tokenizer, v) for v in values]
  texts = [render_user_turn(tokenizer, templates.fill_with_spans(template, v)[0], chat_template)
           for v, ok in zip(values, plain) if ok]
  whole = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
  return [next(whole) if ok else _encode_in_pieces(tokenizer, template, v, chat_template)
          for v, ok in zip(values, plain)]


def encode_user_turn(tokenizer: Any, template: str, values: dict[str, str],
                     chat_template: str | None = None) -> list[int]:
  """encode_user_turns for one turn."""
  return encode_user_turns(tokenizer, template, [values], chat_template)[0]


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
