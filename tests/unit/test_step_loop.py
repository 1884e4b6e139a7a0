"""The step loop's hooks: when each runs, in what order, and what a skipped update does —
with a stand-in step, so no model is compiled."""
import types

import numpy as np
import pytest

from gram_jax.errors import GramError
from gram_jax.training import loop, resume, settings


class Batches:
  def __init__(self):
    self.taken = 0

  def __next__(self):
    self.taken += 1
    return {"input_ids": np.zeros((1, 2, 4), np.int32)}

  def taken_sources(self):
    return [f"data.jsonl:{self.taken}"]


def started(steps, start=0, finite=lambda step: True, max_bad_steps=0):
  def step_fn(state, batch):
    step = state["step"] + 1
    return {"step": step}, {"loss": float(step), "grad_norm": 1.0, "finite": finite(step)}
  checkpointer = types.SimpleNamespace(wait=lambda: None, latest_step=lambda: None,
                                       directory="run/checkpoints")
  training = settings.Training(
      workdir="run", steps=steps, seed=0, optimizer=settings.Optimizer(1e-3), rules=(),
      lora=None, checkpoints=settings.Checkpoints(1, 1, False), max_bad_steps=max_bad_steps,
      peak_flops_per_device=0.0, memory_capacity_gb=0.0, dry_run=False, run_config="{}",
      result_fields={},
      memory_advice=lambda *args: iter(()))
  return resume.Started(training,
                        types.SimpleNamespace(put_batch=lambda b: b), None, None, checkpointer,
                        {"step": start}, start, step_fn)


def test_a_hook_runs_every_nth_step_and_after_the_last_and_every_0_only_at_the_end():
  calls = {1: [], 3: [], 0: []}
  step_loop = loop.StepLoop(started(7), Batches())
  for every in calls:
    step_loop.add_hook(lambda info, every=every: calls[every].append(info.step), every=every)
  assert step_loop.steps() == {"step": 7}
  assert calls == {1: [1, 2, 3, 4, 5, 6, 7], 3: [3, 6, 7], 0: [7]}


def test_a_resumed_run_steps_from_its_checkpoint_and_later_hooks_see_earlier_numbers():
  seen = []
  step_loop = loop.StepLoop(started(5, start=3), Batches())
  step_loop.add_hook(lambda info: info.metrics.update(doubled=2 * info.metrics["loss"]))
  step_loop.add_hook(lambda info: seen.append((info.step, info.metrics["doubled"],
                                               info.sources)))
  step_loop.steps()
  assert seen == [(4, 8.0, ["data.jsonl:1"]), (5, 10.0, ["data.jsonl:2"])]


def test_hooks_are_told_of_a_skipped_update_and_too_many_in_a_row_stop_the_run():
  bad = []
  step_loop = loop.StepLoop(started(9, finite=lambda step: step not in (2, 4, 5, 6),
                                    max_bad_steps=3), Batches())
  step_loop.add_hook(lambda info: bad.append(info.bad_steps))
  with pytest.raises(GramError, match=r"step 6: 3 consecutive .* data.jsonl:6"):
    step_loop.steps()
  assert bad == [0, 1, 0, 1, 2]


def test_the_checkpoint_hook_skips_a_bad_step_and_saves_the_last(monkeypatch):
  saves = []
  checkpointer = types.SimpleNamespace(
      save=lambda step, state, meta, force=False: saves.append((step, force)) or force,
      directory="run/checkpoints")
  flushed = []
  hook = loop.checkpointing(checkpointer, types.SimpleNamespace(state=lambda: {}),
                            types.SimpleNamespace(flush=lambda: flushed.append(True)), steps=3)
  for step, bad_steps in ((1, 0), (2, 1), (3, 0)):
    hook(loop.StepInfo(step, {}, {}, {}, [], bad_steps))
  assert saves == [(1, False), (3, True)] and flushed == [True]


def test_a_resumed_run_evaluates_the_step_it_stopped_before_evaluating(tmp_path):
  every_5 = loop.Evaluation("eval", lambda *args: {}, every=5, at_start=True)
  assert loop.due_on_start(every_5, 0, 20, set())  # a fresh run: the starting model
  assert loop.due_on_start(every_5, 10, 20, {0, 5})  # killed after checkpoint 10, before eval
  assert not loop.due_on_start(every_5, 10, 20, {0, 5, 10})
  assert not loop.due_on_start(every_5, 12, 20, {0, 5, 10})  # not an evaluation step
  assert loop.due_on_start(every_5, 20, 20, {0, 5, 10, 15})  # the last step's was lost
  at_end = loop.Evaluation("eval", lambda *args: {}, every=0)
  assert not loop.due_on_start(at_end, 0, 20, set())
  assert not loop.due_on_start(at_end, 10, 20, set())
  assert loop.due_on_start(at_end, 20, 20, set())
  (tmp_path / "eval_metrics.jsonl").write_text(
      '{"step": 0, "accuracy": 0.5}\n\n{"step": 5, "accuracy": 0.75}\n')
  assert loop.logged_evaluations(str(tmp_path), "eval") == {0: {"accuracy": 0.5},
                                                            5: {"accuracy": 0.75}}
  assert loop.first_evaluation(str(tmp_path), "eval") == {"accuracy": 0.5}
  assert loop.logged_evaluations(str(tmp_path), "other") == {}
