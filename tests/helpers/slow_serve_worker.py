"""A reward server whose device takes SECONDS per batch, served until SIGTERM (run by
test_serve_hostile.py): `python -m tests.helpers.slow_serve_worker PORT SECONDS GRACE`."""
import sys
import time

from gram_jax.serving.lifecycle import serve_until_terminated
from gram_jax.serving.server import RewardServer
from tests.reliability.test_serve_hostile import slowed, tiny_reward


def main() -> None:
  port, seconds, grace = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
  reward = tiny_reward()
  reward.score_prepared(reward.prepare([("q", "a", "b")]))  # compiled before serving
  slowed(reward, seconds)
  serve_until_terminated(RewardServer(reward), "127.0.0.1", port, grace)
  print(f"returned at {time.monotonic()}", flush=True)


if __name__ == "__main__":
  main()
