"""The self-training report: one log line per stage as it is measured, and report.md with
its table and legend."""
import datetime
import time

import ml_collections

from gram_jax import position_bias, provenance
from gram_jax.pseudo_labels import JUDGMENT_PROBLEMS


def _pct(value: float | None) -> str:
  return "-" if value is None else f"{100 * value:.1f}"


def slot_warning(row: dict, heldout_pairs: int) -> str | None:
  """position_bias.answers_by_slot on a stage's held-out figures (no base model measured
  here: the near-zero rule)."""
  if "heldout_accuracy" not in row or row.get("heldout_consistency") is None:
    return None
  return position_bias.answers_by_slot({"accuracy": row["heldout_accuracy"],
                                        "position_consistency": row["heldout_consistency"],
                                        "pairs": heldout_pairs})


def slot_warnings(rows: list[dict], heldout_pairs: int) -> list[str]:
  """report.md's lines for the stages whose judge answers by slot."""
  return [f"- **{row['stage']}**: {warning}" for row in rows
          if (warning := slot_warning(row, heldout_pairs))]


def row_line(row: dict, heldout_pairs: int = 0) -> str:
  """One stage's figures as a log line, written as soon as they are measured (with the
  slot warning when its held-out figures call for one)."""
  parts = []
  if "judged" in row:
    parts.append(f"kept {row['kept']} of {row['judged']} judged pairs")
  if row.get("kept_agree_gold") is not None:
    parts.append(f"{_pct(row['kept_agree_gold'])} % of the kept agree with gold")
  if "heldout_accuracy" in row:
    parts.append(f"held-out verdict accuracy {_pct(row['heldout_accuracy'])} %, "
                 f"P(A)/P(B) {_pct(row['heldout_probability_accuracy'])} %, "
                 f"position consistency {_pct(row['heldout_consistency'])} %")
  if warning := slot_warning(row, heldout_pairs):
    parts.append(f"WARNING: {warning}")
  return f"{row['stage']}: " + ("; ".join(parts) or "done (no held-out pairs)")


LEGEND = """- judged / kept: unlabeled pairs π_φ judged this round, and those whose vote became a
  pseudo-label.
- dropped: pairs given no pseudo-label: a tied vote, a majority below min_vote_share, a mean
  P(label) below confidence_threshold, or no judgment that passed the rules.
- judgments broken: judgments the rule checks took out of the vote, by the first rule broken.
- prompts cut to fit: judging and proving prompts cut by fields to data.cutoff_len.
- kept agree w/ gold: share of the kept pseudo-labels equal to the pair's gold label (known
  only for data that carries it, e.g. the built-in task).
- held-out verdict acc.: the parsed <answer> of one greedy judgment per order, the two
  voting: right when the better response gets more votes (a judgment without a verdict does
  not vote; a split or no vote at all is wrong).
- held-out P(A)/P(B) acc.: P(A) vs P(B) read at the answer after each rationale, averaged over
  the two orders.
- position consistency: pairs whose verdict is unchanged when A and B swap.
- validation verdict acc. (export=best_validation): the same readout on the validation pairs
  that choose the exported model; the held-out pairs never do."""


def report_table(rows: list[dict], exported: int | None = None) -> str:
  """The per-stage table: labels, what labeling kept and dropped, held-out accuracy; the
  exported row marked."""
  validation = any("validation_accuracy" in r for r in rows)
  lines = ["| stage | judged | kept | dropped: tie / split / low conf. / no valid judgment | "
           "judgments broken: no verdict / format / no rationale / long / contradiction / "
           "omits label | prompts cut to fit: judge / prover | "
           "kept agree w/ gold | held-out verdict acc. | held-out P(A)/P(B) acc. | "
           "position consistency |" + (" validation verdict acc. |" if validation else ""),
           "|---" * (10 + validation) + "|"]
  for index, row in enumerate(rows):
    drops, problems = row.get("drop_reasons"), row.get("judgment_problems")
    dropped = "-" if not drops else " / ".join(str(drops[k]) for k in (
        "tie", "split_vote", "low_confidence", "no_valid_judgment"))
    broken = "-" if not problems else " / ".join(
        str(problems[k]) for k in JUDGMENT_PROBLEMS)
    cut = f"{row.get('judge_prompts_trimmed', '-')} / {row.get('proof_prompts_trimmed', '-')}"
    stage = row["stage"] + (" **(exported)**" if index == exported else "")
    lines.append(f"| {stage} | {row.get('judged', '-')} | {row.get('kept', '-')} | "
                 f"{dropped} | {broken} | {cut} | {_pct(row.get('kept_agree_gold'))} | "
                 f"{_pct(row.get('heldout_accuracy'))} | "
                 f"{_pct(row.get('heldout_probability_accuracy'))} | "
                 f"{_pct(row.get('heldout_consistency'))} |" +
                 (f" {_pct(row.get('validation_accuracy'))} |" if validation else ""))
  task = next((r for r in rows if "task_pairs" in r), None)
  if task is not None and "task_own_rationales" in task:
    own = task["task_own_rationales"]
    lines += ["", f"Task adaptation: {task['task_pairs']} task pairs, {own} with their own "
              f"rationale (trained on as written), {task['task_pairs'] - own} proved by π_ψ."]
  elif task is not None:
    lines += ["", f"Task adaptation: {task['task_pairs']} task pairs (verdict labels only)."]
  return "\n".join(lines)


def report(c: ml_collections.ConfigDict, rows: list[dict], exported: int, pairs: dict,
           seconds: float) -> str:
  """report.md: what ran (seed, code, time), which row was exported and why, the table and
  what its columns mean."""
  s = c.self_train
  why = ("export=final: the last stage, as the paper does" if s.export == "final" else
         f"export=best_validation: the best validation verdict accuracy "
         f"({100 * rows[exported]['validation_accuracy']:.1f} %) on {pairs['validation']} "
         f"validation pairs, none of them held out")
  finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  slot_judges = slot_warnings(rows, pairs["heldout"])
  return "\n".join([
      "# GRAM-R² self-training", "",
      f"Seed {c.seed}; {provenance.code_version()}; finished {finished}, "
      f"{datetime.timedelta(seconds=round(seconds))} in its last process (a resumed run "
      f"counts only that part). Every config field: config.json; per-stage figures: "
      f"rounds.jsonl; each held-out judgment's reply: <stage>/heldout.jsonl.",
      f"Held-out: {pairs['heldout']} pairs. Exported to hf/: **{rows[exported]['stage']}** "
      f"({why}).", "",
      report_table(rows, exported), "",
      *(["Judges that answer by slot, not by content:", "", *slot_judges, ""]
        if slot_judges else []),
      "Columns:", "", LEGEND, ""])
