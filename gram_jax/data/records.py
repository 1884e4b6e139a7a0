"""Reading records and validating them into typed pairs.

Every format a user may bring is parsed before tokenisation into one of three record kinds:
UnlabeledPair (here: stage-1 pre-training, self-training pools), PreferencePair and
ProvedPair (data/preference.py: labeled pairs, and labeled pairs with a rationale). A bad
row raises RecordError naming source, line and field; `read_records` either stops on the
first one or skips and counts them, as the user chose.
"""
import collections
import dataclasses
from typing import Any, Callable, Iterable, Iterator

from gram_jax.data import sources
from gram_jax.errors import GramError

MAX_FIELD_CHARS = 1_000_000


@dataclasses.dataclass(frozen=True)
class UnlabeledPair:
  prompt: str
  response_a: str
  response_b: str
  where: str = ""
  extra: dict = dataclasses.field(default_factory=dict, compare=False)


class RecordError(GramError):
  def __init__(self, where: str, field: str, reason: str):
    super().__init__(f"{where}: field '{field}': {reason}")
    self.where, self.field, self.reason = where, field, reason


def text_field(row: dict, field: str, where: str, allow_empty: bool = False) -> str:
  """A required string field; raises RecordError naming the field when missing or wrong."""
  if field not in row or row[field] is None:
    raise RecordError(where, field, "missing")
  value = row[field]
  if not isinstance(value, str):
    raise RecordError(where, field, f"expected a string, got {type(value).__name__}")
  if not allow_empty and not value.strip():
    raise RecordError(where, field, "empty")
  if len(value) > MAX_FIELD_CHARS:
    raise RecordError(where, field, f"longer than {MAX_FIELD_CHARS} characters")
  return value


_QUESTION_HEADER = "[User Question]\n"


def _marker(name: str, edge: str) -> tuple[str, ...]:
  return tuple(f"[The {edge} of Assistant {name}'s {kind}]" for kind in ("Answer", "Response"))


def _occurrences(text: str, markers: tuple[str, ...], start: int = 0
                 ) -> Iterator[tuple[int, str]]:
  """Every occurrence of any of `markers` at or after `start`, in order: each marker's next
  index is looked up again only once it is passed (linear in the text)."""
  following = {m: text.find(m, start) for m in markers}
  while True:
    found = [(i, m) for m, i in following.items() if i >= 0]
    if not found:
      return
    index, marker = min(found)
    yield index, marker
    following[marker] = text.find(marker, index + 1)


def answer_blocks(output: str) -> tuple[str, str] | None:
  """Responses A and B of an official GRAM output ("[The Start of Assistant A's Answer]\n
  ... \n[The End of Assistant A's Answer]" then B's block, B's end last), found with
  str.find in linear time: a record's text must not cost quadratic time. The first A block
  is read; its end is the first A end marker that B's block follows."""
  a_start, marker = next(_occurrences(output, tuple(m + "\n" for m in _marker("A", "Start"))),
                         (-1, ""))
  if a_start < 0:
    return None
  a_from = a_start + len(marker)
  body = output.rstrip()
  b_end = next((len(body) - len(m) - 1 for m in _marker("B", "End")
                if body.endswith("\n" + m)), None)
  if b_end is None:
    return None
  for a_end, marker in _occurrences(output, tuple("\n" + m for m in _marker("A", "End")),
                                    a_from):
    if a_end >= b_end:
      return None
    after = a_end + len(marker)
    while after < len(output) and output[after].isspace():
      after += 1
    b_start = next((m for m in _marker("B", "Start") if output.startswith(m + "\n", after)),
                   None)
    if b_start is not None and after + len(b_start) + 1 <= b_end:
      return output[a_from:a_end], output[after + len(b_start) + 1:b_end]
  return None


def _official_pretrain_pair(row: dict, where: str) -> UnlabeledPair:
  """GRAM pre-training format: instruction='[User Question]\\n{q}\\n\\n', output=A/B block."""
  instruction = text_field(row, "instruction", where)
  extra_input = row.get("input") or ""
  if not isinstance(extra_input, str):
    raise RecordError(where, "input", f"expected a string, got {type(extra_input).__name__}")
  output = text_field(row, "output", where)
  stripped = instruction.lstrip()
  prompt = (stripped[len(_QUESTION_HEADER):] if stripped.startswith(_QUESTION_HEADER)
            else stripped).rstrip()
  if extra_input.strip():
    prompt = f"{prompt}\n{extra_input}"
  answers = answer_blocks(output)
  if not answers:
    raise RecordError(where, "output", "does not hold the '[The Start of Assistant A's "
                      "Answer]' ... '[The End of Assistant B's Answer]' blocks")
  if not answers[0].strip() or not answers[1].strip():
    raise RecordError(where, "output", "a response inside the A/B blocks is empty")
  return UnlabeledPair(prompt, answers[0], answers[1], where)


def parse_unlabeled_pair(row: Any, where: str) -> UnlabeledPair:
  """Official GRAM pre-training rows or plain {prompt, response_a, response_b} rows."""
  if not isinstance(row, dict):
    raise RecordError(where, "<record>", f"expected a JSON object, got {type(row).__name__}")
  if "instruction" in row and "output" in row:
    return _official_pretrain_pair(row, where)
  known = ("prompt", "response_a", "response_b")
  extra = {k: v for k, v in row.items() if k not in known}
  return UnlabeledPair(text_field(row, "prompt", where), text_field(row, "response_a", where),
                       text_field(row, "response_b", where), where, extra)


@dataclasses.dataclass
class ReadReport:
  """What reading kept and what it skipped, by reason."""
  kept: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  first_errors: list = dataclasses.field(default_factory=list)

  def skip(self, error: GramError) -> None:
    reason = getattr(error, "field", None) or getattr(error, "reason", "record")
    self.skipped[str(reason)] += 1
    if len(self.first_errors) < 5:
      self.first_errors.append(str(error))

  def summary(self) -> str:
    total = sum(self.skipped.values())
    if not total:
      return f"{self.kept} records"
    return f"{self.kept} records, {total} skipped ({dict(self.skipped)}); first: " \
           f"{self.first_errors[0]}"


def read_records(paths: Iterable[str], parse: Callable[[Any, str], Any], on_bad: str = "fail",
                 shard: tuple[int, int] = (0, 1)) -> tuple[list[Any], ReadReport]:
  """Reads and validates every row of `paths`; keeps rows i with i % count == index.

  on_bad: 'fail' raises on the first bad row; 'skip' counts it and goes on.
  """
  if on_bad not in ("fail", "skip"):
    raise GramError(f"on_bad_record must be 'fail' or 'skip', got {on_bad!r}")
  index, count = shard
  records, report = [], ReadReport()
  position = 0
  for path in paths:
    for row in sources.iter_rows(path):
      try:
        record = sources.parse_row(row, parse)
      except GramError as error:
        if on_bad == "fail" and isinstance(error, RecordError):
          raise RecordError(error.where, error.field, f"{error.reason}; to skip and count "
                            "such rows instead: --config.data.on_bad_record=skip") from None
        if on_bad == "fail":
          raise
        report.skip(error)
        continue
      if position % count == index:
        records.append(record)
      position += 1
  report.kept = len(records)
  return records, report
