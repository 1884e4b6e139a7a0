"""Does a verdict judge read the content or the slot? Pure rules over the label probabilities
of held-out pairs shown in both orders, and the guard that warns when training taught the
judge to answer by slot (a verdict-only loss can fall while the judge learns only the A/B
prior of its batches: docs/method.md, "Position bias")."""
import math

import numpy as np

# The guard fires when held-out consistency is below this share of the base model's ...
FAR_BELOW_BASE = 0.5
# ... or below this absolute level, with accuracy within two standard errors of chance.
NEAR_ZERO = 0.1


def order_readout(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
  """Held-out figures of labeled pairs whose better response is `response_a`: `first` [N, 2]
  holds P(A), P(B) with it shown first, `second` with it shown second. accuracy: the
  both-order score (official readout) prefers it; position_consistency: both orders' verdicts
  pick the same response; p_first_slot: mean probability of the first slot's label over
  both orders (0.5 for a judge with no slot preference)."""
  first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
  if len(first) == 0:
    return {"accuracy": float("nan"), "position_consistency": float("nan"),
            "p_first_slot": float("nan"), "pairs": 0}
  score_better = (first[:, 0] + second[:, 1]) / 2
  score_worse = (first[:, 1] + second[:, 0]) / 2
  picks_better_first = first[:, 0] > first[:, 1]
  picks_better_second = second[:, 1] > second[:, 0]
  return {"accuracy": float(np.mean(score_better > score_worse)),
          "position_consistency": float(np.mean(picks_better_first == picks_better_second)),
          "p_first_slot": float(np.mean(np.concatenate([first[:, 0], second[:, 0]]))),
          "pairs": int(len(first))}


def answers_by_slot(figures: dict, base: dict | None = None) -> str | None:
  """A one-line warning when a judge's held-out figures say it answers by slot: position
  consistency far below the base model's (or near zero) while accuracy stays within two
  standard errors of chance; None otherwise. `figures` and `base` as `order_readout` returns
  them (`base`: the model before training, when measured)."""
  consistency, accuracy = figures["position_consistency"], figures["accuracy"]
  pairs = figures.get("pairs") or 0
  if pairs == 0 or math.isnan(consistency):
    return None
  chance_band = 2 * math.sqrt(0.25 / pairs)
  base_consistency = (base or {}).get("position_consistency")
  far_below = (base_consistency is not None and not math.isnan(base_consistency)
               and consistency < FAR_BELOW_BASE * base_consistency)
  if not (far_below or consistency < NEAR_ZERO) or abs(accuracy - 0.5) > chance_band:
    return None
  against = (f" (base model {100 * base_consistency:.1f} %)"
             if base_consistency is not None else "")
  slot = figures.get("p_first_slot")
  leaning = f", mean P(first slot) {slot:.2f}" if slot is not None else ""
  return (f"the judge answers by slot, not by content: held-out position consistency "
          f"{100 * consistency:.1f} %{against}, accuracy {100 * accuracy:.1f} % on {pairs} "
          f"pairs (chance ± {100 * chance_band:.1f}){leaning}")
