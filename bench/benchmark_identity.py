"""Every shared benchmark file through the evaluate stage with a stand-in judge, for checking
that a refactor left parsing, detection, grouping, summaries and reports unchanged.

  python bench/benchmark_identity.py --repo=. --out=/tmp/after
  python bench/benchmark_identity.py --repo=<a checkout of the old commit> --out=/tmp/before
  diff -r /tmp/before /tmp/after

The judge scores a pair from a hash of its text (no model), so the run takes seconds and
its outputs depend only on the code under test. It prints each file's benchmark and count,
or the error a file raises (an error must stay the same too).
"""
import argparse
import hashlib
import os
import sys

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data")


def hashed_judge(reward, triples, log, given_orders=None, desc=""):
  """Scores, trimming, consistency and slot preference from a hash of each pair's text."""
  outcomes = []
  for triple in triples:
    h = hashlib.sha256("\x00".join(triple).encode()).digest()
    outcomes.append({"a": h[0] / 255, "b": h[1] / 255, "trimmed": h[2] < 20,
                     "consistent": h[3] < 180, "p_first_slot": h[4] / 255})
  return outcomes


class StandIn:
  reasoning, batch_size, max_len = None, 16, 2048

  def describe(self) -> str:
    return "a stand-in judge (hash of the text)"


def shared_files(data: str) -> list[str]:
  files = [os.path.join(data, "hhh-alignment", "hhh_alignment_eval.json"),
           os.path.join(data, "rmb", "Pairwise_set"), os.path.join(data, "rmb", "BoN_set")]
  for folder, suffixes in (("llmbar", (".json",)), ("pandalm", (".json", ".jsonl")),
                           ("rm-bench", (".json", ".jsonl")), ("hh-rlhf", (".gz",))):
    for root, _, names in sorted(os.walk(os.path.join(data, folder))):
      files += [os.path.join(root, n) for n in sorted(names) if n.endswith(suffixes)]
  return files


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repo", default=".", help="the checkout whose code runs")
  parser.add_argument("--out", required=True, help="a fresh folder for the outputs")
  parser.add_argument("--data", default=SHARED, help="the shared data folder")
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.repo))
  from gram_jax.stages import evaluate
  evaluate.judge_journaled = hashed_judge
  files = shared_files(os.path.abspath(args.data))
  for path, name in zip(files, evaluate.output_names(files)):
    try:
      summary = evaluate.evaluate_file(StandIn(), path, "auto", os.path.join(args.out, name),
                                       {"model": "stand-in"})
      print(name, summary["benchmark"], summary.get("pairs", summary.get("items")))
    except Exception as e:  # the error is part of the output to compare
      print(name, "ERROR", type(e).__name__, str(e)[:200])


if __name__ == "__main__":
  main()
