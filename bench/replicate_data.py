"""The replication recipe's data, from ../shared/data: the evaluation sets whole and in their
native formats, the questions they ask, the in-distribution pairs that ask none of them and
their split by prompt, the seed proofs, and the files one seed's rows train and are judged
on (`recipe_data`)."""
import functools
import gzip
import json
import os
from typing import Any, Callable

import numpy as np

from gram_jax.data import benchmarks, encode, preference, sources
from gram_jax.errors import GramError
from gram_jax.text import templates
from replicate_report import IN_DIST

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared data folder; GRAM_JAX_SHARED_DATA moves it (a device machine unpacks it elsewhere).
SHARED = os.environ.get("GRAM_JAX_SHARED_DATA") or os.path.join(ROOT, "..", "shared", "data")
SEED_PROOFS = os.path.join(ROOT, "bench", "data", "hh_rlhf_seed_proofs.jsonl")
HH_RLHF = os.path.join(SHARED, "hh-rlhf", "harmless-base-test.jsonl.gz")

HELD_OUT_RMB = ("Helpfulness/Code", "Helpfulness/Reasoning", "Harmlessness/S1",
                "Harmlessness/multi")
SPLIT_SEED = 1234  # the held-out split, the same for every seed and scale
FILE_NAMES = {"rmbench": "rmbench_chat"}  # RM-Bench's chat rows name no domain: the file does
LLMBAR = (("Natural",), ("Adversarial", "GPTInst"), ("Adversarial", "GPTOut"),
          ("Adversarial", "Manual"), ("Adversarial", "Neighbor"))


def read_json(path: str) -> list[dict]:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    return [json.loads(l) for l in f if l.strip()] if ".jsonl" in path else json.load(f)


def write_json(path: str, rows: list[dict]) -> str:
  """Writes `rows` unless the file already holds them: a rerun keeps each file's
  modification time, which evaluate's "already evaluated" key reads."""
  text = json.dumps(rows)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      if f.read() == text:
        return path
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


def sample(rows: list, count: int, seed: int) -> list:
  """`count` rows (0: all) as evaluate's `eval.sample=random` draws them."""
  return benchmarks.select_records(rows, count, "random", seed)[0]


def _rmb_rows(kind: str, held_out: bool) -> list[dict]:
  rows = [r.data for r in sources.iter_rows(os.path.join(SHARED, "rmb", kind))]
  return [r for r in rows if any(f"/{c}" in r["category_path"] for c in HELD_OUT_RMB)
          == held_out]


def native_eval_sets() -> dict[str, list[dict]]:
  """Every evaluation set, whole, in its native format (LLMBar's subsets joined, each row
  naming its RewardBench subset)."""
  llmbar = [{**row, "subset": benchmarks.rewardbench.LLMBAR_SUBSETS[parts]}
            for parts in LLMBAR
            for row in read_json(os.path.join(SHARED, "llmbar", "LLMBar", *parts,
                                              "dataset.json"))]
  return {"llmbar": llmbar,
          "hhh": read_json(os.path.join(SHARED, "hhh-alignment", "hhh_alignment_eval.json")),
          "rmbench": read_json(os.path.join(SHARED, "rm-bench", "chat_filtered.json")),
          "pandalm": read_json(os.path.join(SHARED, "pandalm", "testset-v1.json")),
          "rmb": _rmb_rows("Pairwise_set", held_out=True),
          "rmb_bon": _rmb_rows("BoN_set", held_out=True)}


def questions(rows: list[dict]) -> set[str]:
  """The questions a set asks, as the judge reads them."""
  asked = set()
  for index, row in enumerate(rows):
    where = f"[{index}]"
    if "bon_best" in row:
      asked.add(preference.parse_best_of_n(row, where).prompt.strip())
    elif "annotator1" in row:
      asked.add(preference.pandalm_question(row, where).strip())
    elif isinstance(row.get("chosen"), list) and isinstance(row["chosen"][0], str):
      asked.add(row["prompt"].strip())  # RM-Bench's 3 x 3 variants
    else:
      asked.add(preference.parse_preference_pair(row, where).prompt.strip())
  return asked


def seed_proofs(out: str, asked: set[str]) -> str:
  """The hand-written proofs joined with their HH-RLHF pairs, in the order each was proved;
  none may prove a pair whose question an evaluation set asks."""
  pairs = {}
  for row in sources.iter_rows(HH_RLHF):
    pairs[int(row.where.rsplit(":", 1)[1])] = row
  proved = []
  for line in read_json(SEED_PROOFS):
    row = pairs[line["hh_rlhf_line"]]
    pair = preference.parse_preference_pair(row.data, row.where)
    a, b = ((pair.chosen, pair.rejected) if line["chosen_is"] == "A"
            else (pair.rejected, pair.chosen))
    if pair.prompt.strip() in asked:
      raise GramError(f"{SEED_PROOFS}: {row.where} asks an evaluation question")
    proved.append({"prompt": pair.prompt, "response_a": a, "response_b": b,
                   "label": line["chosen_is"], "rationale": line["rationale"]})
  return write_json(os.path.join(out, "seed_proofs.json"), proved)


def in_distribution_pairs(asked: set[str]) -> tuple[list[preference.PreferencePair], dict]:
  """Every pair of the training sources (HH-RLHF harmless-base test, RMB pairwise outside
  the held-out categories), repeats removed, none asking an evaluation question."""
  pairs, bad = [], 0
  for row in sources.iter_rows(HH_RLHF):
    try:
      pairs.append(preference.parse_preference_pair(row.data, row.where))
    except GramError:  # HH-RLHF's empty replies: counted, as data.on_bad_record=skip does
      bad += 1
  pairs += [preference.parse_preference_pair(r, r["pair_uid"])
            for r in _rmb_rows("Pairwise_set", held_out=False)]
  unique = list({_pair_key(p): p for p in pairs}.values())  # RMB repeats some pairs
  kept = [p for p in unique if p.prompt.strip() not in asked]
  return kept, {"read": len(pairs) + bad, "skipped_bad": bad,
                "dropped_duplicates": len(pairs) - len(unique),
                "dropped_eval_overlap": len(unique) - len(kept)}


def split_by_prompt(pairs: list[preference.PreferencePair], held_out: int, seed: int
                    ) -> tuple[list[preference.PreferencePair], list[preference.PreferencePair]]:
  """(held-out, rest): whole prompts drawn in a seeded order until `held_out` pairs are
  reached, so no held-out question is ever trained on, in any pair."""
  by_prompt: dict[str, list[preference.PreferencePair]] = {}
  for pair in pairs:
    by_prompt.setdefault(pair.prompt.strip(), []).append(pair)
  prompts = sorted(by_prompt)
  order = np.random.default_rng(seed).permutation(len(prompts))
  chosen: set[str] = set()
  count = 0
  for i in order:
    if count >= held_out:
      break
    chosen.add(prompts[i])
    count += len(by_prompt[prompts[i]])
  if count < held_out:
    raise GramError(f"only {count} pairs to hold out, {held_out} asked for")
  return ([p for p in pairs if p.prompt.strip() in chosen],
          [p for p in pairs if p.prompt.strip() not in chosen])


def _pair_key(pair: preference.PreferencePair) -> tuple[str, ...]:
  """A pair whatever its order."""
  return (pair.prompt, *sorted((pair.chosen, pair.rejected)))


def fitting(pairs: list, tokenizer, cutoff: int) -> list:
  """The pairs whose GRAM judging prompt (the chat-rendered official prompt) fits `cutoff`
  tokens in both A/B orders without cutting a field."""
  encoder = encode.JudgeEncoder(tokenizer, 1 << 30, templates.GRAM_JUDGE_PROMPT, ("A", "B"))
  first = encoder.encode_all([(p.prompt, p.chosen, p.rejected) for p in pairs])
  second = encoder.encode_all([(p.prompt, p.rejected, p.chosen) for p in pairs])
  return [p for p, a, b in zip(pairs, first, second) if max(len(a), len(b)) <= cutoff]


@functools.cache
def seedless_data(cutoff: int, tokenizer) -> tuple[dict, set, list, dict, list]:
  """What every seed shares: the evaluation sets, their questions, the in-distribution
  pairs and those that fit `cutoff` (tokenized once, not once a seed)."""
  native = native_eval_sets()
  asked = set().union(*map(questions, native.values()))
  pairs, counts = in_distribution_pairs(asked)
  return native, asked, pairs, counts, fitting(pairs, tokenizer, cutoff)


def source(pair: preference.PreferencePair) -> str:
  """Which in-distribution source a pair comes from."""
  return "HH-RLHF" if pair.where.startswith(HH_RLHF) else "RMB"


def longer_preferred(pairs: list) -> float:
  """The share of pairs of unequal length whose preferred response is the longer: what
  always picking the longer would score on them."""
  unequal = [p for p in pairs if len(p.chosen) != len(p.rejected)]
  return float(np.mean([len(p.chosen) > len(p.rejected) for p in unequal])) if unequal \
      else float("nan")


def length_balanced(pairs: list, count: int, seed: int, source: Callable[[Any], str]
                    ) -> list:
  """About `count` pairs (0: as many as can be balanced) whose preferred response is the
  longer (in characters) in exactly half within each source (`source(pair)`, each source
  its share of `count`), in their original order: training data on which "the longer wins"
  scores 50 %, and not by mixing a source where it wins with one where it loses. Pairs of
  equal length are left out."""
  groups: dict[str, list] = {}
  for pair in pairs:
    groups.setdefault(source(pair), []).append(pair)
  halves = {name: (count // 2 * len(group) // len(pairs) if count else len(group))
            for name, group in groups.items()}
  if count:  # what the shares' rounding left goes to the largest source
    halves[max(groups, key=lambda name: len(groups[name]))] += count // 2 - sum(halves.values())
  kept = set()
  for name in sorted(groups):
    longer = [p for p in groups[name] if len(p.chosen) > len(p.rejected)]
    shorter = [p for p in groups[name] if len(p.chosen) < len(p.rejected)]
    half = min(len(longer), len(shorter), halves[name])
    if half:  # sample() reads a count of 0 as "all"
      kept |= {id(p) for p in sample(longer, half, seed) + sample(shorter, half, seed)}
  return [p for p in pairs if id(p) in kept]


def recipe_data(out: str, scale: Any, seed: int, tokenizer) -> dict:
  """The evaluation files (in-distribution held-out, its learning-curve head, the
  out-of-distribution samples) and the training pairs of one seed."""
  native, asked, pairs, counts, fit = seedless_data(scale.cutoff, tokenizer)
  held_out, rest = split_by_prompt(fit, scale.heldout_pairs, SPLIT_SEED)
  held_out = sample(held_out, scale.heldout_pairs, SPLIT_SEED)
  pool = sample(rest, scale.rounds * scale.unlabeled_pairs, seed + 1)
  in_pool = {id(p) for p in pool}
  candidates = [p for p in rest if id(p) not in in_pool]
  train = sample(candidates, scale.train_pairs, seed)
  balanced = length_balanced(candidates, scale.train_pairs, seed, source)
  data = os.path.join(out, "data")
  files = {IN_DIST: write_json(os.path.join(data, "in_distribution.json"),
                               [p.as_row() for p in held_out])}
  files.update({name: write_json(os.path.join(data, f"{FILE_NAMES.get(name, name)}.json"),
                                 sample(rows, scale.ood_records, seed))
                for name, rows in native.items()})
  unlabeled = [write_json(os.path.join(data, f"unlabeled_round{r + 1}.json"),
                          [{"prompt": p.prompt, "response_a": p.chosen,
                            "response_b": p.rejected} for p in pool[r::scale.rounds]])
               for r in range(scale.rounds)]
  return {
      "files": files,
      # A random share of the held-out pairs (kept in file order, which groups the sources:
      # the first ones would all be HH-RLHF).
      "curve": write_json(os.path.join(data, "curve.json"),
                          [p.as_row() for p in sample(held_out, scale.curve_pairs,
                                                      SPLIT_SEED + 1)]),
      "train": write_json(os.path.join(data, "train.json"), [p.as_row() for p in train]),
      "train_length_balanced": write_json(os.path.join(data, "train_length_balanced.json"),
                                          [p.as_row() for p in balanced]),
      "unlabeled": unlabeled, "seed_proofs": seed_proofs(data, asked),
      "source_of": {p.prompt.strip(): source(p) for p in held_out},
      "counts": {**counts, "in_distribution": len(pairs), "fit_cutoff": len(fit),
                 "heldout": len(held_out), "train": len(train),
                 "train_length_balanced": len(balanced),
                 "train_longer_preferred": longer_preferred(train),
                 "heldout_prompts": len({p.prompt.strip() for p in held_out})}}
