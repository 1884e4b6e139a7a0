"""Labeled preference pairs from the formats users have, validated into PreferencePair.

Accepted rows (one parser picks the format by the fields present):
- {prompt, chosen, rejected, ...}: RewardBench / JudgeBench / RM-Bench style (extra fields kept)
- {question, response_A, response_B, label: "A>B"|"B>A"}: JudgeBench as published
- {instruction, input, output: "A"|"B"}: official GRAM fine-tuning rows (full judging prompt)
- {chosen: [messages], rejected: [messages]} (optionally prompt: [messages]): conversational
- {chosen: "\\n\\nHuman: ...\\n\\nAssistant: ...", rejected: ...}: Anthropic HH-RLHF transcripts
- {input, output_1, output_2, label: 1|2}: LLMBar, MT-Bench human, LLMEval², FairEval
- {instruction, input, response1, response2, annotator1..3}: PandaLM (majority of three; ties)
- {conversation_input, chosen: {answer}, reject: {answer}}: RMB pairwise set
- {chosen_instruction, rejected_instruction}: HHH alignment as packaged by prometheus-eval
RMB's best-of-n groups ({conversation_input, bon_best, loser_list}) are BestOfNGroup records.
"""
import dataclasses
import hashlib
import re
from typing import Any, Callable

from gram_jax.data.records import RecordError, UnlabeledPair, parse_unlabeled_pair, text_field


@dataclasses.dataclass(frozen=True)
class PreferencePair:
  prompt: str
  chosen: str
  rejected: str
  where: str = ""
  extra: dict = dataclasses.field(default_factory=dict, compare=False)

  def as_row(self) -> dict:
    return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


_GRAM_BLOCKS = re.compile(
    r"\[User Question\]\n(?P<prompt>.*?)\n\n"
    r"\[The Start of Assistant A's (?:Answer|Response)\]\n(?P<a>.*?)\n"
    r"\[The End of Assistant A's (?:Answer|Response)\]\n\n"
    r"\[The Start of Assistant B's (?:Answer|Response)\]\n(?P<b>.*?)\n"
    r"\[The End of Assistant B's (?:Answer|Response)\]", re.S)
_HUMAN, _ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def preference_row(prompt: str, response_a: str, response_b: str, label: str,
                   first_label: str = "A") -> dict:
  """{prompt, chosen, rejected} of a pair labeled by the letter of its better response."""
  chosen, rejected = ((response_a, response_b) if label == first_label
                      else (response_b, response_a))
  return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def both_orders(pairs: list[PreferencePair]) -> list[dict]:
  """Items for the prover: each labeled pair in both A/B orders with its label."""
  return [{"prompt": p.prompt, "response_a": a, "response_b": b, "label": label}
          for p in pairs
          for a, b, label in ((p.chosen, p.rejected, "A"), (p.rejected, p.chosen, "B"))]


def _official_finetune(row: dict, where: str) -> PreferencePair:
  instruction = text_field(row, "instruction", where)
  label = text_field(row, "output", where).strip()
  if label not in ("A", "B"):
    raise RecordError(where, "output", f"expected 'A' or 'B', got {label!r}")
  blocks = _GRAM_BLOCKS.search(instruction)
  if not blocks:
    raise RecordError(where, "instruction", "does not hold the judging prompt's question and "
                      "A/B answer blocks")
  a, b = blocks.group("a"), blocks.group("b")
  chosen, rejected = (a, b) if label == "A" else (b, a)
  return PreferencePair(blocks.group("prompt"), chosen, rejected, where)


def _llmbar(row: dict, where: str) -> PreferencePair:
  """LLMBar and the sets shipped with it (MT-Bench human, LLMEval², FairEval):
  {input, output_1, output_2, label}, label 1 or 2 naming the better output."""
  label = row.get("label")
  if label not in (1, 2, "1", "2"):
    raise RecordError(where, "label", f"expected 1 or 2, got {label!r}")
  outputs = (text_field(row, "output_1", where), text_field(row, "output_2", where))
  chosen, rejected = outputs if int(label) == 1 else outputs[::-1]
  return PreferencePair(text_field(row, "input", where), chosen, rejected, where)


def pandalm_label(row: dict, where: str) -> int:
  """The majority of PandaLM's three annotators: 1 or 2 names the better response, 0 a tie
  (also when no two annotators agree)."""
  votes = []
  for i in (1, 2, 3):
    vote = row.get(f"annotator{i}")
    if vote not in (0, 1, 2):
      raise RecordError(where, f"annotator{i}", f"expected 0, 1 or 2, got {vote!r}")
    votes.append(vote)
  top = max((0, 1, 2), key=votes.count)
  return top if votes.count(top) >= 2 else 0


def pandalm_question(row: dict, where: str) -> str:
  """PandaLM's question: the instruction, then its input on a new line when there is one."""
  parts = [text_field(row, field, where, allow_empty=True) for field in ("instruction", "input")
           if field == "instruction" or row.get(field) is not None]
  question = "\n".join(part for part in parts if part.strip())
  if not question:
    raise RecordError(where, "instruction", "empty, and no input")
  return question


def _pandalm_response(row: dict, field: str, where: str) -> str:
  """A response as PandaLM's annotators saw it: empty outputs were judged too, and a few
  outputs 'True' were stored as JSON booleans."""
  value = row.get(field)
  if isinstance(value, bool):
    return str(value)
  return text_field(row, field, where, allow_empty=True)


def _pandalm(row: dict, where: str) -> PreferencePair:
  label = pandalm_label(row, where)
  if label == 0:
    raise RecordError(where, "annotator1", "the annotators' majority is a tie, not a "
                      "preference")
  responses = (_pandalm_response(row, "response1", where),
               _pandalm_response(row, "response2", where))
  chosen, rejected = responses if label == 1 else responses[::-1]
  extra = {k: v for k, v in row.items() if k in ("idx", "cmp_key", "motivation_app")}
  return PreferencePair(pandalm_question(row, where), chosen, rejected, where, extra)


def _conversation_question(row: dict, where: str) -> str:
  messages = _messages_text(row.get("conversation_input"), where, "conversation_input")
  if messages[-1]["role"] != "user":
    raise RecordError(where, "conversation_input", "must end with the user turn to answer")
  return _transcript(messages)


def _answer(value: Any, where: str, field: str) -> str:
  """The answer text of RMB's {llm_name, answer}."""
  if not isinstance(value, dict):
    raise RecordError(where, field, "expected {llm_name, answer}")
  # RMB keeps whitespace-only answers (two in Harmlessness/S5): degenerate outputs it scores.
  return text_field(value, "answer", f"{where}: field '{field}'", allow_empty=True)


def _rmb_pair(row: dict, where: str) -> PreferencePair:
  extra = {k: row[k] for k in ("pair_uid", "category_path") if k in row}
  return PreferencePair(_conversation_question(row, where),
                        _answer(row.get("chosen"), where, "chosen"),
                        _answer(row.get("reject"), where, "reject"), where, extra)


@dataclasses.dataclass(frozen=True)
class BestOfNGroup:
  """RMB best-of-n: the best answer must beat every loser."""
  prompt: str
  best: str
  losers: tuple[str, ...]
  where: str = ""
  extra: dict = dataclasses.field(default_factory=dict, compare=False)


def check_candidates(row: Any, where: str) -> dict:
  """A best-of-n input row: {prompt: str, responses: [str, ...], ...}, returned as given."""
  if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
    raise RecordError(where, "prompt", "expected a string")
  responses = row.get("responses")
  if not isinstance(responses, list) or not responses or not all(
      isinstance(r, str) for r in responses):
    raise RecordError(where, "responses", "expected a non-empty list of strings")
  return row


def parse_best_of_n(row: Any, where: str) -> BestOfNGroup:
  """{conversation_input, bon_best: {answer}, loser_list: [{answer}, ...], category_path}."""
  if not isinstance(row, dict):
    raise RecordError(where, "<record>", f"expected a JSON object, got {type(row).__name__}")
  losers = row.get("loser_list")
  if not isinstance(losers, list) or not losers:
    raise RecordError(where, "loser_list", "expected a non-empty list of {llm_name, answer}")
  extra = {k: row[k] for k in ("bon_uid", "category_path") if k in row}
  return BestOfNGroup(_conversation_question(row, where),
                      _answer(row.get("bon_best"), where, "bon_best"),
                      tuple(_answer(loser, where, f"loser_list[{i}]")
                            for i, loser in enumerate(losers)), where, extra)


_PROMETHEUS = re.compile(r"###The instruction to evaluate:\n(?P<question>.*?)\n\n"
                         r"###Response to evaluate:\n(?P<response>.*?)\n\n###Score Rubrics:",
                         re.S)


def _prometheus_side(row: dict, field: str, where: str) -> tuple[str, str]:
  found = _PROMETHEUS.search(text_field(row, field, where))
  if not found or not found.group("response").strip():
    raise RecordError(where, field, "does not hold '###The instruction to evaluate:' and a "
                      "non-empty '###Response to evaluate:' before '###Score Rubrics:'")
  return found.group("question"), found.group("response")


def _hhh(row: dict, where: str) -> PreferencePair:
  """HHH alignment as prometheus-eval packages it: each side is a grading prompt that holds
  the question and one response."""
  question, chosen = _prometheus_side(row, "chosen_instruction", where)
  other_question, rejected = _prometheus_side(row, "rejected_instruction", where)
  if question != other_question:
    raise RecordError(where, "rejected_instruction", "asks another question than "
                      "chosen_instruction")
  extra = {"source": row["source"]} if "source" in row else {}
  return PreferencePair(question, chosen, rejected, where, extra)


def _judgebench(row: dict, where: str) -> PreferencePair:
  label = text_field(row, "label", where).strip()
  if label not in ("A>B", "B>A"):
    raise RecordError(where, "label", f"expected 'A>B' or 'B>A', got {label!r}")
  a, b = text_field(row, "response_A", where), text_field(row, "response_B", where)
  chosen, rejected = (a, b) if label == "A>B" else (b, a)
  extra = {k: v for k, v in row.items() if k not in ("question", "response_A", "response_B")}
  return PreferencePair(text_field(row, "question", where), chosen, rejected, where, extra)


def _messages_text(messages: Any, where: str, field: str) -> list[dict]:
  if not isinstance(messages, list) or not messages:
    raise RecordError(where, field, "expected a non-empty list of messages")
  for i, message in enumerate(messages):
    if not isinstance(message, dict) or not isinstance(message.get("content"), str) or \
        message.get("role") not in ("system", "user", "assistant"):
      raise RecordError(where, f"{field}[{i}]", "expected {role: system|user|assistant, "
                        "content: str}")
  return messages


def _transcript(messages: list[dict]) -> str:
  """The question for the judge: the user text alone, or the whole earlier conversation."""
  if len(messages) == 1 and messages[0]["role"] == "user":
    return messages[0]["content"]
  names = {"user": "User", "assistant": "Assistant", "system": "System"}
  return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)


def _conversational(row: dict, where: str) -> PreferencePair:
  chosen = _messages_text(row["chosen"], where, "chosen")
  rejected = _messages_text(row["rejected"], where, "rejected")
  if isinstance(row.get("prompt"), list):
    context = _messages_text(row["prompt"], where, "prompt")
  else:
    context = chosen[:-1]
    if rejected[:-1] != context:
      raise RecordError(where, "rejected", "does not share the chosen conversation's turns")
  for field, messages in (("chosen", chosen), ("rejected", rejected)):
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
      raise RecordError(where, field, "must end with a non-empty assistant message")
  if not context:
    raise RecordError(where, "prompt", "no user turn before the responses")
  extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
  return PreferencePair(_transcript(context), chosen[-1]["content"], rejected[-1]["content"],
                        where, extra)


def _split_hh(text: str, where: str, field: str) -> tuple[str, str]:
  cut = text.rfind(_ASSISTANT)
  if cut < 0 or not text.lstrip("\n").startswith("Human:"):
    raise RecordError(where, field, "not an HH-RLHF transcript ('\\n\\nHuman: ... "
                      "\\n\\nAssistant: ...')")
  return text[:cut], text[cut + len(_ASSISTANT):].strip()


def _hh_rlhf(row: dict, where: str) -> PreferencePair:
  chosen_text, rejected_text = text_field(row, "chosen", where), text_field(row, "rejected",
                                                                            where)
  context, chosen = _split_hh(chosen_text, where, "chosen")
  other_context, rejected = _split_hh(rejected_text, where, "rejected")
  if context != other_context:
    raise RecordError(where, "rejected", "does not share the chosen transcript's turns")
  if not chosen or not rejected:
    raise RecordError(where, "chosen" if not chosen else "rejected", "empty last reply")
  turns = [t for t in re.split(r"\n\n(?=Human:|Assistant:)", context.strip()) if t.strip()]
  prompt = turns[0][len("Human:"):].strip() if len(turns) == 1 else "\n\n".join(turns)
  if not prompt:
    raise RecordError(where, "chosen", "empty human turn")
  return PreferencePair(prompt, chosen, rejected, where)


def _not_a_pair(field: str, what: str, benchmark: str) -> Callable[[dict, str], PreferencePair]:
  def refuse(row: dict, where: str) -> PreferencePair:
    raise RecordError(where, field, f"{what}, not a pair: evaluate it with benchmark "
                      f"{benchmark}")
  return refuse


def _plain(row: dict, where: str) -> PreferencePair:
  extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
  return PreferencePair(text_field(row, "prompt", where), text_field(row, "chosen", where),
                        text_field(row, "rejected", where), where, extra)


@dataclasses.dataclass(frozen=True)
class RowFormat:
  """A record format: which records it `recognises` (by their fields) and how to `parse` one."""
  name: str
  recognises: Callable[[dict], bool]
  parse: Callable[[dict, str], PreferencePair]


def _first_is(value: Any, kind: type) -> bool:
  return isinstance(value, list) and bool(value) and isinstance(value[0], kind)


# In detection order: a record is the first format that recognises it. data/benchmarks
# recognises its files by these names too.
ROW_FORMATS = (
    RowFormat("gram_finetune", lambda r: "instruction" in r and "output" in r,
              _official_finetune),
    RowFormat("rmb_bon", lambda r: "bon_best" in r,
              _not_a_pair("bon_best", "a best-of-n group", "rmb_bon")),
    RowFormat("rmb", lambda r: "conversation_input" in r, _rmb_pair),
    RowFormat("pandalm", lambda r: "annotator1" in r, _pandalm),
    RowFormat("hhh", lambda r: "chosen_instruction" in r, _hhh),
    RowFormat("judgebench", lambda r: "response_A" in r and "label" in r, _judgebench),
    RowFormat("llmbar", lambda r: "output_1" in r and "output_2" in r, _llmbar),
    RowFormat("rmbench", lambda r: _first_is(r.get("chosen"), str),
              _not_a_pair("chosen", "an RM-Bench item (three chosen and three rejected "
                          "responses)", "rmbench")),
    RowFormat("conversational", lambda r: _first_is(r.get("chosen"), dict), _conversational),
    RowFormat("hh_rlhf", lambda r: "prompt" not in r and isinstance(r.get("chosen"), str) and
              r["chosen"].startswith(_HUMAN), _hh_rlhf),
    RowFormat("plain", lambda r: True, _plain),
)


def row_format(row: dict) -> RowFormat:
  return next(f for f in ROW_FORMATS if f.recognises(row))


def parse_preference_pair(row: Any, where: str) -> PreferencePair:
  """One validated pair from any supported row shape; RecordError names the field at fault."""
  if not isinstance(row, dict):
    raise RecordError(where, "<record>", f"expected a JSON object, got {type(row).__name__}")
  return row_format(row).parse(row, where)


def parse_unlabeled(row: Any, where: str) -> UnlabeledPair:
  """An unlabeled pair from any pair format: GRAM pre-training rows and plain
  {prompt, response_a, response_b} as they are; a labeled row loses its label, its two
  responses ordered by a hash of their text so that A is not always the better one."""
  if isinstance(row, dict) and ("response_a" in row or ("instruction" in row and
                                                        "output" in row)):
    return parse_unlabeled_pair(row, where)
  pair = parse_preference_pair(row, where)
  first, second = sorted((pair.chosen, pair.rejected),
                         key=lambda text: hashlib.sha256(text.encode()).digest())
  return UnlabeledPair(pair.prompt, first, second, where, pair.extra)


def pair_identity(pair: PreferencePair) -> tuple[str, frozenset]:
  """A pair's identity whatever the order of its responses."""
  return pair.prompt, frozenset((pair.chosen, pair.rejected))
