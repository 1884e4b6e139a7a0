"""Turns a policy's chat-formatted prompt and response back into the plain question and
answer a judge reads.

RLHF trainers send the reward model what the policy saw and wrote: the prompt rendered with
the *policy's* chat template (ChatML for Qwen, header blocks for Llama-3) and the response
with its end-of-turn token. A judge that reads that markup judges the policy's formatting,
and its own chat template would wrap a second conversation around the first. The known
formats are recognised by their markers; text without markers is returned as it is.
"""
import dataclasses
import re

# Every parser here runs in time linear in its input (str.find and anchored matches, no
# backtracking over the text): prompts come from clients.
_THINK_EMPTY = re.compile(r"\s*<think>\s*</think>\s*")
_ROLE = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  name: str
  start: str  # opens a turn's header: start, role, header_end, content, end
  header_end: str
  end: str
  after_end: str  # an optional separator after a turn's end marker
  open_think: bool  # the open turn at the end may hold an empty think block
  prefix: tuple[str, ...]  # markers before the first turn
  ends: tuple[str, ...]  # markers that end the policy's answer


FORMATS = (
    ChatFormat("chatml", "<|im_start|>", "\n", "<|im_end|>", "\n", True, (),
               ("<|im_end|>", "<|endoftext|>")),
    ChatFormat("llama3", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", "",
               False, ("<|begin_of_text|>",), ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")),
)
_PLAIN_ENDS = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>")
# Pad tokens as a policy's tokenizer decodes them: OpenRLHF decodes left-padded sequences with
# their pads (Qwen <|endoftext|>, Llama-3.1 <|finetune_right_pad_id|> or <|end_of_text|>, ...).
_PADS = ("<|endoftext|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "</s>", "<pad>",
         "<|pad|>", "[PAD]")


def strip_leading_pads(text: str) -> str:
  """`text` without the pad tokens a left-padded batch decodes in front of it."""
  position, stripped = 0, True
  while stripped:
    stripped = False
    for pad in _PADS:
      if text.startswith(pad, position):
        position, stripped = position + len(pad), True
  return text[position:]


def _header(text: str, position: int, chat_format: ChatFormat) -> tuple[str, int] | None:
  """(role, where the content starts) of a turn header at `position`, else None."""
  if not text.startswith(chat_format.start, position):
    return None
  role = _ROLE.match(text, position + len(chat_format.start))
  if role is None or not text.startswith(chat_format.header_end, role.end()):
    return None
  return role.group(), role.end() + len(chat_format.header_end)


def detect(prompt: str) -> ChatFormat | None:
  """The chat format whose turn markers the prompt uses (a header: marker, role, end of
  header), or None for plain text."""
  for chat_format in FORMATS:
    position = prompt.find(chat_format.start)
    while position >= 0:
      if _header(prompt, position, chat_format):
        return chat_format
      position = prompt.find(chat_format.start, position + 1)
  return None


def _is_open_turn(rest: str, chat_format: ChatFormat) -> bool:
  """Whether `rest` is the generation prompt left open at the end: a header, then nothing (or,
  for ChatML, an empty think block)."""
  header = _header(rest, 0, chat_format)
  if header is None:
    return False
  tail = rest[header[1]:]
  return not tail or (chat_format.open_think and
                      _THINK_EMPTY.fullmatch(tail) is not None)


def _turns(prompt: str, chat_format: ChatFormat) -> list[tuple[str, str]] | None:
  """(role, content) of every turn, or None when text lies outside the markers."""
  position = 0
  for marker in chat_format.prefix:
    if prompt.startswith(marker, position):
      position += len(marker)
  turns = []
  while True:
    start = prompt.find(chat_format.start, position)
    if start < 0:
      return None if prompt[position:].strip() else turns
    if prompt[position:start].strip():
      return None
    header = _header(prompt, start, chat_format)
    if header is None:
      return None
    end = prompt.find(chat_format.end, header[1])
    if end < 0:
      return turns if _is_open_turn(prompt[start:], chat_format) else None
    turns.append((header[0], prompt[header[1]:end]))
    position = end + len(chat_format.end)
    if chat_format.after_end and prompt.startswith(chat_format.after_end, position):
      position += len(chat_format.after_end)


def question_of(prompt: str) -> str:
  """The question a judge should read: the user's message of a one-question conversation
  (a system message is kept above it), else the dialogue as plain 'Role: text' paragraphs.
  Raises ValueError when the prompt mixes markers and free text (a truncated template)."""
  chat_format = detect(prompt)
  if chat_format is None:
    return prompt
  turns = _turns(prompt, chat_format)
  if turns is None:
    raise ValueError(f"the prompt uses {chat_format.name} markers but has text outside its "
                     "turns (cut or mixed markup)")
  users = [content for role, content in turns if role == "user"]
  others = [role for role, _ in turns if role not in ("user", "system")]
  if len(users) == 1 and not others:
    system = [content.strip() for role, content in turns if role == "system"]
    return "\n\n".join(system + [users[0].strip()])
  return "\n\n".join(f"{role.capitalize()}: {content.strip()}" for role, content in turns)


def answer_of(response: str, chat_format: ChatFormat | None) -> str:
  """The policy's answer without its end-of-turn markers, the pads a right-padded batch
  decodes after it, and the empty think block some templates open the answer with."""
  ends = (chat_format.ends if chat_format else _PLAIN_ENDS) + _PADS
  end, stripped = len(response), True
  while stripped:
    stripped = False
    while end and response[end - 1].isspace():
      end -= 1
    for marker in ends:
      if response.endswith(marker, 0, end):
        end, stripped = end - len(marker), True
  text = response[:end]
  think = _THINK_EMPTY.match(text)
  return text[think.end() if think else 0:].strip()


def split_query(query: str, prompt: str) -> tuple[str, str]:
  """(question, answer) of an OpenRLHF sample: `query` is the decoded prompt + response,
  `prompt` the rendered prompt. Raises ValueError when the query does not start with the
  prompt (a prompt cut to fit the policy's context, or a tokenizer that does not round-trip
  its text): guessing where the answer starts would judge the wrong text. Pad tokens in front
  of either (a left-padded batch, as OpenRLHF decodes it) are dropped first; trailing ones go
  with the answer's end markers."""
  query, prompt = strip_leading_pads(query), strip_leading_pads(prompt)
  if not query.startswith(prompt):
    raise ValueError("the query does not start with its prompt (was the prompt truncated, or "
                     "decoded differently from how it was sent?)")
  chat_format = detect(prompt)
  return question_of(prompt), answer_of(query[len(prompt):], chat_format)
