"""Best-of-n: each row's candidates ranked by the judge (`config.best_of_n.method`), the
winners written with the scores the ranking used. Every row is checked before the model
loads."""
import json
import os

import ml_collections
from absl import logging

from gram_jax import journal
from gram_jax.config.mesh import device_mesh
from gram_jax.config.reasoning import reasoning_settings
from gram_jax.data import preference, sources
from gram_jax.errors import GramError
from gram_jax.inference.reward import RewardModel
from gram_jax.judge_card import read_judge_card
from gram_jax.stages import common


def read_candidates(path: str) -> list[dict]:
  return sources.parse_rows(path, preference.check_candidates)


def pick_winners(reward: RewardModel, rows: list[dict], method: str) -> list[dict]:
  """Each row with its best_index, best_response and the scores the ranking used."""
  winners = []
  for row in rows:
    ranked = reward.rank(row["prompt"], row["responses"], method)
    winners.append({**row, "best_index": ranked.best,
                    "best_response": row["responses"][ranked.best], "scores": ranked.scores})
  return winners


def run(c: ml_collections.ConfigDict) -> None:
  rows = read_candidates(c.best_of_n.input)
  card = read_judge_card(c.model.path)
  if reasoning_settings(c, card.get("reasoning")) is None and (
      c.reasoning.votes or c.reasoning.orders or c.reasoning.temperature >= 0):
    raise GramError("config.reasoning.votes, orders and temperature apply to reasoning "
                    f"judges: {c.model.path} has no judge.json with reasoning; name "
                    "--config.reasoning.preset=release")
  reward = common.reward_model(c, device_mesh(c), c.eval.max_len, c.eval.batch_size)
  output = c.best_of_n.output or os.path.join(c.workdir, "winners.jsonl")
  winners = pick_winners(reward, rows, c.best_of_n.method)
  journal.write_jsonl(winners, output)
  logging.info("best-of-n: %d rows by %s; winners in %s", len(winners), c.best_of_n.method,
               output)
  print(json.dumps({"rows": len(winners), "output": output}))
