"""The figures of bench/replicate_gram.py: each row's cells from its evaluations (checked
against the same cell recomputed from the records), bootstrap intervals, the markdown table
and the learning-curve PNG. Pure functions of the recipe's results."""
import zlib

import numpy as np

from gram_jax.data import benchmarks

IN_DIST = "in_distribution"
COLUMNS = ((IN_DIST, "in distribution"), ("llmbar", "LLMBar (chat-hard)"), ("hhh", "HHH"),
           ("rmbench", "RM-Bench chat"), ("rmbench_hard", "RM-Bench hard"),
           ("pandalm", "PandaLM"), ("rmb", "RMB pairwise (held-out)"),
           ("rmb_bon", "RMB BoN (held-out)"))
OOD = ("llmbar", "hhh", "rmbench", "pandalm", "rmb", "rmb_bon")


# Each accuracy column recomputed from per-record results as the official summary computes
# it (pairs pool; RM-Bench averages its items' 3x3 matrices; RMB averages subsets, then
# goals), so it can be recomputed on resampled records.
def _pooled(rows: list[dict]) -> float:
  return float(np.mean([r["correct"] for r in rows]))


CELL_OF_RECORDS = {
    IN_DIST: (IN_DIST, _pooled),
    "llmbar": ("llmbar", _pooled),
    "hhh": ("hhh", _pooled),
    "rmbench": ("rmbench", lambda rows: float(np.mean([r["avg"] for r in rows]))),
    "rmbench_hard": ("rmbench", lambda rows: float(np.mean([r["hard"] for r in rows]))),
    "pandalm": ("pandalm", _pooled),
    "rmb": ("rmb", lambda rows: benchmarks.rmb.summary(
        "rmb", ((r["category_path"], r["correct"]) for r in rows))["overall"]),
    "rmb_bon": ("rmb_bon", lambda rows: benchmarks.rmb.summary(
        "rmb_bon", ((r["category_path"], r["correct"]) for r in rows))["overall"]),
}
SUMMARY_CELL = {
    IN_DIST: lambda s: s["accuracy"], "llmbar": lambda s: s["groups"]["chat-hard"],
    "hhh": lambda s: s["overall"], "rmbench": lambda s: s["overall"]["avg"],
    "rmbench_hard": lambda s: s["overall"]["hard"], "pandalm": lambda s: s["accuracy"],
    "rmb": lambda s: s["overall"], "rmb_bon": lambda s: s["overall"]}


def intervals(results: dict[str, list[dict]], resamples: int = 2000,
              seed: int = 0) -> dict[str, list[float]]:
  """95 % percentile bootstrap interval of every accuracy column whose set was evaluated,
  and of the mean of the out-of-distribution sets when all were: each set's records
  resampled with replacement, the cell recomputed from them. Each set draws from its own
  stream (seeded by `seed` and its name), so its interval does not depend on which other
  sets were evaluated beside it."""
  rngs = {name: np.random.default_rng([seed, zlib.crc32(name.encode())]) for name in results}
  columns = {name: source for name, (source, _) in CELL_OF_RECORDS.items() if source in results}
  draws: dict[str, list[float]] = {name: [] for name in columns}
  with_mean = all(name in results for name in OOD)
  if with_mean:
    draws["mean"] = []
  for _ in range(resamples):
    resampled = {name: [rows[i] for i in rngs[name].integers(0, len(rows), len(rows))]
                 for name, rows in results.items()}
    cells = {name: CELL_OF_RECORDS[name][1](resampled[source])
             for name, source in columns.items()}
    for name, value in cells.items():
      draws[name].append(value)
    if with_mean:
      draws["mean"].append(float(np.mean([cells[k] for k in OOD])))
  return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
          for name, v in draws.items()}


def figures(evaluated_sets: dict[str, dict]) -> dict:
  """The row's cells from the official summaries, each checked against the same cell
  recomputed from the records, with their intervals; position consistency and the mean
  P(first slot) in distribution."""
  summaries = {k: v["summary"] for k, v in evaluated_sets.items()}
  results = {k: v["results"] for k, v in evaluated_sets.items()}
  cells = {name: SUMMARY_CELL[name](summaries[source])
           for name, (source, _) in CELL_OF_RECORDS.items() if source in summaries}
  for name, value in cells.items():
    source, cell_of = CELL_OF_RECORDS[name]
    recomputed = cell_of(results[source])
    if not abs(recomputed - value) < 1e-9:
      raise AssertionError(f"{name}: {recomputed} from the records, {value} reported")
  if all(k in cells for k in OOD):
    cells["mean"] = float(np.mean([cells[k] for k in OOD]))
  if IN_DIST in summaries:
    cells["consistency"] = summaries[IN_DIST].get("position_consistency")
    cells["p_first_slot"] = summaries[IN_DIST].get("p_first_slot")
  cells["ci"] = intervals(results)
  cells["records"] = {name: len(rows) for name, rows in results.items()}
  cells["trimmed"] = sum(s.get("trimmed_pairs", 0) for s in summaries.values())
  return cells


def by_source(results: list[dict], source_of: dict[str, str]) -> dict[str, list]:
  """In-distribution accuracy of each source's held-out pairs: [accuracy, pairs]."""
  groups: dict[str, list[bool]] = {}
  for row in results:
    groups.setdefault(source_of[row["prompt"].strip()], []).append(bool(row["correct"]))
  return {name: [float(np.mean(flags)), len(flags)] for name, flags in sorted(groups.items())}


# One-pair sets whose records name the preferred response: the length check reads them.
LENGTH_SETS = ((IN_DIST, "in dist."), ("llmbar", "LLMBar"), ("rmb", "RMB pairwise"))


def preferred_and_other(name: str, record: dict) -> tuple[str, str]:
  """The preferred response of a one-pair record of set `name`, and the other one."""
  if name == "llmbar":
    first, second = record["output_1"], record["output_2"]
    return (first, second) if record["label"] == 1 else (second, first)
  if name == "rmb":
    return record["chosen"]["answer"], record["reject"]["answer"]
  return record["chosen"], record["rejected"]


def length_preference(evaluated: dict[str, dict]) -> dict[str, list]:
  """Does the judge prefer the longer response? Per one-pair set: [share of pairs where it
  picked the longer one (in characters), share where the longer one is the preferred one
  (what always picking the longer would score), pairs]; pairs of equal length left out."""
  shares = {}
  for name, _ in LENGTH_SETS:
    if name not in evaluated:
      continue
    picked_longer, longer_preferred = [], []
    for record in evaluated[name]["results"]:
      preferred, other = preferred_and_other(name, record)
      if len(preferred) != len(other):
        longer_preferred.append(len(preferred) > len(other))
        picked_longer.append(record["correct"] == longer_preferred[-1])
    shares[name] = [float(np.mean(picked_longer)), float(np.mean(longer_preferred)),
                    len(picked_longer)]
  return shares


def accuracy_by_length(evaluated: dict[str, dict], resamples: int = 2000,
                       seed: int = 0) -> dict[str, list]:
  """Accuracy where the preferred response is the longer and where it is the shorter, per
  one-pair set, and the 95 % bootstrap interval of their mean (each group resampled apart):
  [accuracy, pairs, accuracy, pairs, low, high]. The mean is 50 % for a judge that answers by
  length alone, however the set mixes the two, so a gain in it is judgement."""
  split = {}
  for name, _ in LENGTH_SETS:
    if name not in evaluated:
      continue
    correct = {True: [], False: []}
    for record in evaluated[name]["results"]:
      preferred, other = preferred_and_other(name, record)
      if len(preferred) != len(other):
        correct[len(preferred) > len(other)].append(float(record["correct"]))
    longer, shorter = np.array(correct[True]), np.array(correct[False])
    if not (len(longer) and len(shorter)):
      continue
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    means = [(rng.choice(longer, len(longer)).mean() + rng.choice(shorter, len(shorter)).mean())
             / 2 for _ in range(resamples)]
    split[name] = [float(longer.mean()), len(longer), float(shorter.mean()), len(shorter),
                   float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
  return split


def cell(values: list[float], percent: bool = True,
         interval: list[float] | None = None) -> str:
  """Mean ± sample standard deviation over seeds; one seed's value with its 95 % interval
  [low, high]. Percentages to 0.1, rates to 3 digits; '—' when not run."""
  values = [v for v in values if v is not None and v == v]
  if not values:
    return "—"
  scale = 100 if percent else 1
  shown = (lambda x: f"{x:.1f}") if percent else (lambda x: f"{x:.3g}")
  mean = shown(scale * float(np.mean(values)))
  if len(values) == 1 and interval:
    return f"{mean} [{shown(scale * interval[0])}, {shown(scale * interval[1])}]"
  if len(values) == 1:
    return mean
  return f"{mean} ± {shown(scale * float(np.std(values, ddof=1)))}"


def table(results: dict[int, dict], rows: tuple[str, ...], scalar_rows: set[str]) -> str:
  """The markdown table of `rows` (in that order) that ran; a scalar row has no slots."""
  header = ([label for _, label in COLUMNS] + ["mean of 6 OOD sets",
                                               "position consistency (in dist.)",
                                               "P(first slot) (in dist.)", "train pairs/s",
                                               "prompt"])
  lines = ["| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
  done = [r for r in rows if any(r in s["rows"] for s in results.values())]
  for row in done:
    per_seed = [s["rows"][row] for s in results.values() if row in s["rows"]]
    ci = lambda k: per_seed[0]["ci"].get(k) if len(per_seed) == 1 else None
    cells = [cell([s.get(k) for s in per_seed], interval=ci(k)) for k, _ in COLUMNS]
    cells.append(cell([s.get("mean") for s in per_seed], interval=ci("mean")))
    scalar = row in scalar_rows
    cells.append("— (scalar)" if scalar else cell([s.get("consistency") for s in per_seed]))
    cells.append("— (scalar)" if scalar else cell([s.get("p_first_slot") for s in per_seed],
                                                    percent=False))
    cells.append(cell([s.get("pairs_per_second") for s in per_seed], False))
    cells.append(per_seed[0].get("prompt", "—"))
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  split = [f"{row} " + ", ".join(f"{source} {100 * acc:.1f} % ({n})" for source, (acc, n)
                                 in seed["rows"][row]["by_source"].items())
           for row in done for seed in list(results.values())[:1]
           if "by_source" in seed["rows"].get(row, {})]
  if split:
    lines += ["", "In distribution by source (seed " + str(next(iter(results))) + "): " +
              "; ".join(split) + "."]
  first = list(results.values())[0]["rows"]
  longer = {row: first[row]["longer"] for row in done if first.get(row, {}).get("longer")}
  if longer:
    baseline = {}
    for shares in longer.values():
      baseline.update({name: share for name, (_, share, _) in shares.items()})
    label = dict(LENGTH_SETS)
    split = next((first[row]["longer_by_source"] for row in done
                  if first.get(row, {}).get("longer_by_source")), {})
    lines += ["", "Picks the longer response (seed " + str(next(iter(results))) + ", pairs "
              "of unequal length): " + "; ".join(
                  f"{row} " + ", ".join(f"{label[name]} {100 * picked:.1f} %"
                                        for name, (picked, _, _) in shares.items())
                  for row, shares in longer.items()) +
              ". Always picking the longer would score " +
              ", ".join(f"{label[name]} {100 * share:.1f} %"
                        for name, share in baseline.items()) +
              ("" if not split else " (in dist. by source: " + ", ".join(
                  f"{source} {100 * share:.1f} %" for source, (share, _) in split.items())
               + ")") + "."]
  by_length = {row: first[row]["by_length"][IN_DIST] for row in done
               if IN_DIST in first.get(row, {}).get("by_length", {})}
  if by_length:
    n_longer, n_shorter = next(iter(by_length.values()))[1:4:2]
    lines += ["", f"In distribution, accuracy where the preferred response is the longer "
              f"({n_longer} pairs) / the shorter ({n_shorter}), and their mean (50 % for a "
              "judge that answers by length alone): " + "; ".join(
                  f"{row} {100 * longer:.1f} / {100 * shorter:.1f} %, mean "
                  f"{50 * (longer + shorter):.1f} % [{100 * low:.1f}, {100 * high:.1f}]"
                  for row, (longer, _, shorter, _, low, high) in by_length.items()) + "."]
  return "\n".join(lines)


def curve_tables(results: dict[int, dict]) -> str:
  """Each trained row's learning curve of the first seed as the recipe logged it: a table
  per GRAM row (accuracy, position consistency, mean P(first slot), the slot guard's flag,
  the mean training loss of the 10 steps up to the point), one line per scalar row."""
  seed, first = next(iter(results.items()))
  blocks = []
  for name, row in first["rows"].items():
    points = row.get("curve") or []
    if not points:
      continue
    if not any("position_consistency" in p for p in points):
      blocks.append(f"{name} (seed {seed}), held-out curve accuracy by step: " + ", ".join(
          f"{p['step']}: {100 * p['accuracy']:.1f} %" for p in points) + ".")
      continue
    lines = [f"{name} (seed {seed}):", "",
             "| step | accuracy | position consistency | mean P(first slot) | flagged: answers "
             "by slot | mean training loss of the 10 steps up to it |", "|---|---|---|---|---|---|"]
    for p in points:
      flagged = "— (start)" if p["step"] == 0 else ("yes" if p.get("answers_by_slot") else "no")
      loss = f"{p['train_loss_before']:.3f}" if "train_loss_before" in p else "—"
      lines.append(f"| {p['step']} | {100 * p['accuracy']:.1f} | "
                   f"{100 * p['position_consistency']:.1f} | {p['p_first_slot']:.3f} | "
                   f"{flagged} | {loss} |")
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


def row_colours(results: dict[int, dict]) -> dict[str, str]:
  """One matplotlib colour per row with a curve, in the order rows first appear, so a row
  keeps its colour in a panel where an earlier row has no line (BT has no slots)."""
  names = dict.fromkeys(name for seed_result in results.values()
                        for name, row in seed_result["rows"].items() if row.get("curve"))
  return {name: f"C{i}" for i, name in enumerate(names)}


def curves_png(results: dict[int, dict], path: str) -> str:
  """Held-out accuracy (every trained row), position consistency and mean P(first slot)
  (GRAM rows) against the step: one colour per row in every panel, one line style per
  seed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
  panels = (("accuracy", "held-out accuracy (curve pairs)"),
            ("position_consistency", "position consistency"),
            ("p_first_slot", "mean P(first slot)"))
  colours = row_colours(results)
  styles = ("-", "--", ":", "-.")
  for index, (seed, seed_result) in enumerate(results.items()):
    for name, row in seed_result["rows"].items():
      points = row.get("curve") or []
      for ax, (key, _) in zip(axes, panels):
        steps = [p["step"] for p in points if key in p]
        if steps:
          ax.plot(steps, [p[key] for p in points if key in p], marker="o",
                  color=colours[name], linestyle=styles[index % len(styles)],
                  label=f"{name} (seed {seed})")
  for ax, (_, title) in zip(axes, panels):
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.grid(alpha=0.3)
    if ax.get_lines()[1:]:  # more than the 0.5 guide
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
