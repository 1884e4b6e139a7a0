"""Best-of-n from the command line: pick the winner of each row's candidates.

  python -m gram_jax.best_of_n --model=MODEL --input=candidates.jsonl \
      --output=winners.jsonl [--method=knockout|linear|round_robin]

Input rows: {"prompt": str, "responses": [str, ...], ...}; each output row is the input row
plus best_index, best_response and the per-response scores the method used.
"""
import json
import sys

from absl import app, flags

from gram_jax import cli_util, synthetic
from gram_jax.data import sources
from gram_jax.errors import GramError
from gram_jax.reward import RewardModel

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "HF directory, gram_jax checkpoint or run directory.",
                    required=True)
flags.DEFINE_string("input", None, "JSONL/JSON/Parquet rows with prompt and responses.",
                    required=True)
flags.DEFINE_string("output", None, "JSONL file for the rows with their winners.",
                    required=True)
flags.DEFINE_enum("method", "knockout", ["linear", "knockout", "round_robin"], "Ranking.")
flags.DEFINE_integer("max_len", 2048, "Tokens of one judging prompt.")
flags.DEFINE_integer("batch_size", 16, "Prompts per jitted call.")


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


def main(argv: list[str]) -> None:
  del argv
  cli_util.quiet_library_logs()
  try:
    rows = read_candidates(FLAGS.input)  # every row checked before the model loads
    reward = RewardModel.from_pretrained(FLAGS.model, max_len=FLAGS.max_len,
                                         batch_size=FLAGS.batch_size)
    winners = []
    for row in rows:
      ranked = reward.rank(row["prompt"], row["responses"], FLAGS.method)
      winners.append({**row, "best_index": ranked.best,
                      "best_response": row["responses"][ranked.best], "scores": ranked.scores})
    synthetic.write_jsonl(winners, FLAGS.output)
  except GramError as e:
    sys.exit(f"error: {e}")
  print(json.dumps({"rows": len(winners), "output": FLAGS.output}))


if __name__ == "__main__":
  app.run(main)
