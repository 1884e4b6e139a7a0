"""Best-of-n from the command line: pick the winner of each row's candidates.

  python -m gram_jax.best_of_n --model=MODEL --input=candidates.jsonl \
      --output=winners.jsonl [--method=linear|knockout|round_robin|bradley_terry]
  # a released GRAM-RR checkpoint as its model card reads it (GRAM-RR prompt, one order),
  # with voting@5:
  python -m gram_jax.best_of_n --model=MODEL ... --reasoning_preset=release --votes=5

The judge's prompt, labels and reasoning come from its judge.json (judge_card.judge_prompt's
rule: a reasoning judge reads pairs with the GRAM-RR prompt unless --template names another).

Input rows: {"prompt": str, "responses": [str, ...], ...}; each output row is the input row
plus best_index, best_response and the per-response scores the method used.
"""
import json

from absl import app, flags, logging

from gram_jax import cli_util, journal, judge_card, storage
from gram_jax.data import sources
from gram_jax.errors import GramError
from gram_jax.inference import ranking
from gram_jax.inference.reward import RewardModel

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "HF directory, gram_jax checkpoint or run directory.",
                    required=True)
flags.DEFINE_string("input", None, "JSONL/JSON/Parquet rows with prompt and responses.",
                    required=True)
flags.DEFINE_string("output", None, "JSONL file for the rows with their winners.",
                    required=True)
flags.DEFINE_enum("method", "linear", list(ranking.METHODS),
                  "Ranking (linear: the official scan, n - 1 comparisons).")
flags.DEFINE_integer("max_len", 0, "Tokens of one judging prompt (0: the judge's budget; "
                     "release 6,144, else 2,048).")
flags.DEFINE_string("template", "", "Judging prompt: a name (gram, gram_rr, ...) or its text; "
                    "empty: the judge card's, else the rule's default.")
flags.DEFINE_integer("batch_size", 16, "Prompts per jitted call.")
flags.DEFINE_string("reasoning_preset", "", "release: read the model as a GRAM-RR judge with "
                    "the release settings (temperature 0.75, 2048 new tokens).")
flags.DEFINE_integer("votes", 0, "voting@k for a reasoning judge: judgments in total (0: its "
                     "judge card's).")
flags.DEFINE_integer("orders", 0, "1: every judgment in the pair's order (release); 2: half in "
                     "each order (0: the judge card's).")
flags.DEFINE_float("temperature", -1.0, "Sampling temperature of a reasoning judge "
                   "(< 0: its judge card's).")


def read_candidates(path: str) -> list[dict]:
  rows = []
  for row in sources.iter_rows(path):
    if isinstance(row.data, Exception):
      raise row.data
    data = row.data
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
      raise GramError(f"{row.where}: field 'prompt': expected a string")
    responses = data.get("responses")
    if not isinstance(responses, list) or not responses or not all(
        isinstance(r, str) for r in responses):
      raise GramError(f"{row.where}: field 'responses': expected a non-empty list of strings")
    rows.append(data)
  return rows


def pick_winners(reward: RewardModel, rows: list[dict], method: str) -> list[dict]:
  """Each row with its best_index, best_response and the scores the ranking used."""
  winners = []
  for row in rows:
    ranked = reward.rank(row["prompt"], row["responses"], method)
    winners.append({**row, "best_index": ranked.best,
                    "best_response": row["responses"][ranked.best], "scores": ranked.scores})
  return winners


def main(argv: list[str]) -> None:
  del argv
  cli_util.quiet_library_logs()
  with cli_util.one_line_errors():
    for value, flag in ((FLAGS.model, "--model"), (FLAGS.input, "--input"),
                        (FLAGS.output, "--output")):
      storage.check(value, flag, data=flag == "--input")
      storage.check_reachable(value, flag)
    rows = read_candidates(FLAGS.input)  # every row checked before the model loads
    card = judge_card.read_judge_card(FLAGS.model)
    if (FLAGS.votes or FLAGS.orders or FLAGS.temperature >= 0) and not (
        card.get("reasoning") or FLAGS.reasoning_preset):
      raise GramError("--votes, --orders and --temperature apply to reasoning judges: the model "
                      "has no judge.json with reasoning; name --reasoning_preset=release")
    reasoning = judge_card.resolve_reasoning(
        card.get("reasoning"), preset=FLAGS.reasoning_preset, votes=FLAGS.votes or None,
        orders=FLAGS.orders or None,
        temperature=FLAGS.temperature if FLAGS.temperature >= 0 else None)
    reward = RewardModel.from_pretrained(
        FLAGS.model, max_len=FLAGS.max_len or None, batch_size=FLAGS.batch_size,
        reasoning=reasoning, template=FLAGS.template or None, template_field="--template",
        reasoning_field=(f"--reasoning_preset={FLAGS.reasoning_preset}"
                         if FLAGS.reasoning_preset else f"{FLAGS.model}/judge.json"))
    logging.info("judge %s: %s", FLAGS.model, reward.describe())
    winners = pick_winners(reward, rows, FLAGS.method)
    journal.write_jsonl(winners, FLAGS.output)
  print(json.dumps({"rows": len(winners), "output": FLAGS.output}))


if __name__ == "__main__":
  app.run(main)
