"""Generation at the lengths reasoning judges really write: SmolLM2-135M-Instruct writes
GRAM-R² rationales for real HH-RLHF pairs, with freed slots refilled from waiting prompts
and without (each batch decodes until its longest row ends); and voting@k of one judging
prompt (one prefill, one shared cache) against k different prompts of the same length.

  python bench/rationale_batches.py --pairs=48 --batch=8 --new=512 --votes=8

Both slot runs sample with the same per-prompt keys, so their rows must be token-identical
(checked). Every timed call follows an untimed one of the same shapes (compiles excluded).
Memory is the growth of the process's resident set during the timed call (sampled every
5 ms) and the bytes of the decoding state the generator allocates (prompt caches and
generated-key rings). Needs ../shared/data (HH-RLHF) and the offline SmolLM2 build. Prints
one JSON object.
"""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data")
HH_RLHF = os.path.join(SHARED, "hh-rlhf", "harmless-base-test.jsonl.gz")


class PeakRss:
  """The largest resident-set growth while the block runs, sampled every 5 ms."""

  def __enter__(self):
    self.start, self.peak, self.running = self._rss(), 0, True
    self.thread = threading.Thread(target=self._watch, daemon=True)
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.running = False
    self.thread.join()

  def _watch(self):
    while self.running:
      self.peak = max(self.peak, self._rss() - self.start)
      time.sleep(0.005)

  @staticmethod
  def _rss() -> int:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(generator, run):
  run()  # compiles every shape the timed call uses
  generator.stats.clear()
  with PeakRss() as rss:
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
  return out, seconds, rss.peak


def lengths_summary(generations) -> dict:
  import numpy as np
  n = np.array([len(g.token_ids) for g in generations])
  return {"mean": float(n.mean()), "median": float(np.median(n)), "p90": float(np.percentile(n, 90)),
          "max": int(n.max()), "min": int(n.min()),
          "ended_by_eos": sum(g.finish_reason == "eos" for g in generations)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--pairs", type=int, default=48)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--new", type=int, default=512)
  parser.add_argument("--max_len", type=int, default=1024)
  parser.add_argument("--votes", type=int, default=8)
  parser.add_argument("--temperature", type=float, default=0.75)
  args = parser.parse_args()
  if not os.path.isfile(HH_RLHF):
    sys.exit(f"{HH_RLHF}: the shared HH-RLHF file is missing")
  import jax
  from gram_jax import provenance
  from gram_jax.data import preference, sources
  from gram_jax.data.encode import JudgeEncoder
  from gram_jax.hf.smollm2 import smollm2_instruct
  from gram_jax.inference.generate import Generator, Sampling
  from gram_jax.pretrained import load_pretrained, load_tokenizer
  from gram_jax.text import templates

  path = smollm2_instruct()
  model, tokenizer = load_pretrained(path), load_tokenizer(path)
  encoder = JudgeEncoder(tokenizer, args.max_len, templates.GRAM_RR_PROMPT)
  pairs = []
  for row in sources.iter_rows(HH_RLHF):
    try:
      pair = preference.parse_preference_pair(row.data, row.where)
    except Exception:  # HH-RLHF's empty replies
      continue
    pairs.append((pair.prompt, pair.chosen, pair.rejected))
    if len(pairs) == 4 * args.pairs:
      break
  encoded, trimmed = encoder.encode_many(pairs)
  prompts = [ids for ids, cut in zip(encoded, trimmed) if not cut][:args.pairs]
  sampling = Sampling(temperature=args.temperature)
  report = {"model": "SmolLM2-135M-Instruct (float32)", "template": "GRAM_RR_PROMPT",
            "data": "HH-RLHF harmless-base test, first pairs whose judging prompt fits",
            "pairs": len(prompts), "batch": args.batch, "max_new": args.new,
            "temperature": args.temperature, "device": jax.devices()[0].device_kind,
            "versions": {"jax": jax.__version__}, "commit": provenance.current_code_version(),
            "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts)}

  runs = {}
  for name, reuse in (("reuse_slots", True), ("one_batch_at_a_time", False)):
    generator = Generator(model, tokenizer, args.batch, args.max_len, reuse_slots=reuse)
    out, seconds, rss = timed(generator,
                              lambda: generator.generate(prompts, args.new, sampling, seed=0))
    tokens = sum(len(g.token_ids) for g in out)
    runs[name] = (out, {"seconds": seconds, "generated_tokens": tokens,
                        "tokens_per_second": tokens / seconds, "rss_growth_bytes": rss,
                        **generator.stats})
  report["lengths"] = lengths_summary(runs["reuse_slots"][0])
  report["slots"] = {name: stats for name, (_, stats) in runs.items()}
  report["slots"]["speedup"] = (runs["one_batch_at_a_time"][1]["seconds"] /
                                runs["reuse_slots"][1]["seconds"])
  report["slots"]["rows_token_identical"] = sum(
      a.token_ids == b.token_ids for a, b in zip(runs["reuse_slots"][0],
                                                  runs["one_batch_at_a_time"][0]))

  # voting@k: the longest prompt k times, against the k longest prompts (one each).
  by_length = sorted(prompts, key=len)
  separate = by_length[-args.votes:]
  voting = {}
  for name, batch in (("one_prompt_k_samples", [separate[-1]] * args.votes),
                      ("k_separate_prompts", separate)):
    generator = Generator(model, tokenizer, args.votes, args.max_len)
    out, seconds, rss = timed(generator,
                              lambda: generator.generate(batch, args.new, sampling, seed=1))
    tokens = sum(len(g.token_ids) for g in out)
    voting[name] = {"seconds": seconds, "generated_tokens": tokens,
                    "seconds_per_1k_generated_tokens": 1000 * seconds / tokens,
                    "rss_growth_bytes": rss, **generator.stats}
  report["voting"] = {"k": args.votes,
                      "prompt_tokens": {"shared": len(separate[-1]),
                                        "separate": [len(p) for p in separate]}, **voting}
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
