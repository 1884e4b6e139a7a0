"""Progress that reads well where it lands: a tqdm bar on a terminal; under SLURM, nohup or
a pipe (no TTY) a plain line every `every_seconds` and at the end, instead of thousands of
carriage-return redraws in the log file."""
import datetime
import sys
import time
from typing import Any, Callable, TextIO

import tqdm

DEFAULT_EVERY_SECONDS = 30.0


def _duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(seconds))))


def _value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
  return str(value)


class Progress:
  """`update(n, **fields)` after each unit of work; `write(text)` for a line of its own."""

  def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "step",
               enabled: bool = True, every_seconds: float = DEFAULT_EVERY_SECONDS,
               stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
    self.total, self.done, self.desc, self.unit = total, initial, desc, unit
    self.enabled, self.every_seconds, self.clock = enabled, every_seconds, clock
    self.stream = stream or sys.stderr
    self.started, self.initial = clock(), initial
    self.printed_at: float | None = None
    self.printed_done = -1
    self.fields: dict[str, Any] = {}
    self.bar = None
    if enabled and self._is_terminal():
      self.bar = tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit,
                           dynamic_ncols=True, file=self.stream)

  def _is_terminal(self) -> bool:
    isatty = getattr(self.stream, "isatty", None)
    return bool(isatty and isatty())

  def update(self, n: int = 1, **fields: Any) -> None:
    if not self.enabled:
      return
    self.done += n
    self.fields.update({k: v for k, v in fields.items() if v is not None})
    if self.bar is not None:
      if fields:
        self.bar.set_postfix({k: _value(v) for k, v in self.fields.items()}, refresh=False)
      self.bar.update(n)
      return
    now = self.clock()
    if self.printed_at is None or now - self.printed_at >= self.every_seconds:
      self._print_line(now)

  def line(self, now: float) -> str:
    """`desc: step 120/1000 (12.0%) | loss 2.31 | 0:02:10 elapsed, ETA 0:15:50`."""
    share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
    parts = [f"{self.desc + ': ' if self.desc else ''}{self.unit} {self.done:,}/"
             f"{self.total:,}{share}"]
    parts += [f"{k} {_value(v)}" for k, v in self.fields.items()]
    elapsed, new = now - self.started, self.done - self.initial
    timing = f"{_duration(elapsed)} elapsed"
    if new > 0 and self.total > self.done:
      timing += f", ETA {_duration(elapsed / new * (self.total - self.done))}"
    return " | ".join(parts + [timing])

  def _print_line(self, now: float) -> None:
    self.printed_at, self.printed_done = now, self.done
    print(self.line(now), file=self.stream, flush=True)

  def write(self, text: str) -> None:
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.write(text, file=self.stream)
    else:
      print(text, file=self.stream, flush=True)

  def close(self) -> None:
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.close()
    elif self.printed_done != self.done:
      self._print_line(self.clock())
    self.enabled = False
