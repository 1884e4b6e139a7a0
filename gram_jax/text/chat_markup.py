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

_THINK_EMPTY = re.compile(r"^\s*<think>\s*</think>\s*")


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  name: str
  turn: re.Pattern  # one complete turn: groups role, content
  open_turn: re.Pattern  # the generation prompt left open at the end: group role
  prefix: tuple[str, ...]  # markers before the first turn
  ends: tuple[str, ...]  # markers that end the policy's answer


FORMATS = (
    ChatFormat("chatml", re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n?", re.S),
               re.compile(r"<\|im_start\|>(\w+)\n(?:<think>\s*</think>\s*)?$"), (),
               ("<|im_end|>", "<|endoftext|>")),
    ChatFormat("llama3", re.compile(
        r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
        re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n$"),
        ("<|begin_of_text|>",), ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")),
)
_PLAIN_ENDS = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>")
# Pad tokens as a policy's tokenizer decodes them: OpenRLHF decodes left-padded sequences with
# their pads (Qwen <|endoftext|>, Llama-3.1 <|finetune_right_pad_id|> or <|end_of_text|>, ...).
_PADS = ("<|endoftext|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "</s>", "<pad>",
         "<|pad|>", "[PAD]")


def strip_leading_pads(text: str) -> str:
  """`text` without the pad tokens a left-padded batch decodes in front of it."""
  stripped = True
  while stripped:
    stripped = False
    for pad in _PADS:
      if text.startswith(pad):
        text, stripped = text[len(pad):], True
  return text


def detect(prompt: str) -> ChatFormat | None:
  """The chat format whose turn markers the prompt uses, or None for plain text."""
  for chat_format in FORMATS:
    if chat_format.turn.search(prompt) or chat_format.open_turn.search(prompt):
      return chat_format
  return None


def _turns(prompt: str, chat_format: ChatFormat) -> list[tuple[str, str]] | None:
  """(role, content) of every turn, or None when text lies outside the markers."""
  text = prompt
  for marker in chat_format.prefix:
    text = text.removeprefix(marker)
  turns, position = [], 0
  for match in chat_format.turn.finditer(text):
    if text[position:match.start()].strip():
      return None
    turns.append((match.group(1), match.group(2)))
    position = match.end()
  rest = text[position:]
  if rest.strip() and not chat_format.open_turn.fullmatch(rest.lstrip()):
    return None
  return turns


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
  text = response
  stripped = True
  while stripped:
    stripped = False
    text = text.rstrip()
    for marker in ends:
      if text.endswith(marker):
        text, stripped = text[:-len(marker)], True
  return _THINK_EMPTY.sub("", text).strip()


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
