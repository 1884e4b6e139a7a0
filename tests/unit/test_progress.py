"""Progress in a log file is a plain line every so often; on a terminal it is a tqdm bar."""
import io

from gram_jax.progress import Progress


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


class Terminal(io.StringIO):
  def isatty(self) -> bool:
    return True


def test_without_a_terminal_it_prints_plain_lines_every_interval_and_at_the_end():
  out, clock = io.StringIO(), FakeClock()
  progress = Progress(110, initial=10, desc="train", every_seconds=30, stream=out, clock=clock)
  for _ in range(10):
    clock.now += 2
    progress.update(1, loss=2.5, tokens_per_s=12345.6)
  # The first update prints (the log shows the run is moving); the next nine fall inside
  # the 30 s interval.
  lines = out.getvalue().splitlines()
  assert lines == ["train: step 11/110 (10.0%) | loss 2.5 | tokens_per_s 12,346 | "
                   "0:00:02 elapsed, ETA 0:03:18"]
  clock.now += 30  # 50 s after the start
  progress.update(1, loss=2.25)
  # 11 new steps in 50 s, 89 left: ETA 50 / 11 * 89 = 404.5 s.
  assert out.getvalue().splitlines()[-1] == (
      "train: step 21/110 (19.1%) | loss 2.25 | tokens_per_s 12,346 | "
      "0:00:50 elapsed, ETA 0:06:45")
  progress.close()
  progress.close()
  assert len(out.getvalue().splitlines()) == 2  # nothing new since the last line
  assert "\r" not in out.getvalue()


def test_close_prints_the_final_count():
  out, clock = io.StringIO(), FakeClock()
  progress = Progress(3, unit="item", every_seconds=30, stream=out, clock=clock)
  for _ in range(3):
    progress.update(1)
  progress.write("a line of its own")
  progress.close()
  assert out.getvalue().splitlines() == ["item 1/3 (33.3%) | 0:00:00 elapsed, ETA 0:00:00",
                                         "a line of its own",
                                         "item 3/3 (100.0%) | 0:00:00 elapsed"]


def test_on_a_terminal_it_draws_a_bar_and_when_disabled_nothing():
  terminal = Terminal()
  progress = Progress(5, desc="eval", stream=terminal)
  progress.update(5, loss=1.0)
  progress.close()
  assert "\r" in terminal.getvalue() and "eval" in terminal.getvalue()
  quiet = io.StringIO()
  silent = Progress(5, enabled=False, stream=quiet)
  silent.update(5)
  silent.write("x")
  silent.close()
  assert quiet.getvalue() == ""
