"""GRAM-R² proof generation with proof selection (paper Eq. 5).

For each item (a pair and the label l to prove) the preference-proving model π_ψ samples k
proofs ẑ_1..ẑ_k from its prompt s, l; each is scored by
Score(ẑ) = -log π_ψ(ẑ | s, l) / log π_ψ(ẑ) and the highest is kept
(`select_proof`): likely given the pair and its label, unlikely on its own.

The prompt is cut by fields to the generator's budget (responses, then the question; never
the chat header or the label line), and the very token ids the proofs are sampled from are
the ones log π_ψ(ẑ | s, l) is computed on. log π_ψ(ẑ) is read after an empty user turn: the
chat header with no pair and no label. Both sum over the proof's sampled tokens, its
end-of-sequence token included when it stopped there.
"""
import dataclasses
from typing import Any, Sequence

import numpy as np

from gram_jax.data.encode import PromptEncoder, pair_values
from gram_jax.inference.generate import Generator, Sampling
from gram_jax.text.tokenizer import encode_user_turn


def proof_score(conditional_logprob: float, unconditional_logprob: float) -> float:
  """-log π(z | s, l) / log π(z), in (-inf, 0]; higher is a better proof."""
  return -conditional_logprob / min(unconditional_logprob, -1e-9)


def select_proof(conditional_logprobs: Sequence[float],
                 unconditional_logprobs: Sequence[float]) -> int:
  """Index of the best of k proofs by proof_score (the first on a tie)."""
  scores = [proof_score(c, u) for c, u in zip(conditional_logprobs, unconditional_logprobs)]
  return int(np.argmax(scores))



@dataclasses.dataclass(frozen=True)
class Proof:
  rationale: str
  trimmed: bool  # the prompt was cut by fields to fit the budget
  prompt_ids: tuple[int, ...]  # what the proofs were generated from and scored after
  conditional: tuple[float, ...]  # log π_ψ(ẑ_i | s, l) of the k candidates (k > 1)
  unconditional: tuple[float, ...]  # log π_ψ(ẑ_i)
  chosen: int  # the candidate kept


def prover_values(fields: dict[str, str]) -> dict[str, str]:
  """The prover prompt's slots: the pair and the label it must prove (never trimmed)."""
  return {**pair_values(fields), "label": fields["label"]}


def prover_prompts(tokenizer: Any, template: str, max_len: int,
                   chat_template: str | None = None,
                   budget_name: str = "config.data.cutoff_len") -> PromptEncoder:
  return PromptEncoder(tokenizer, max_len, template, chat_template, prover_values,
                       budget_name=budget_name)


def empty_context(tokenizer: Any, chat_template: str | None = None) -> list[int]:
  """The context of log π_ψ(ẑ): an empty user turn with the generation prompt."""
  return encode_user_turn(tokenizer, "{input}", {"input": ""}, chat_template)


def _proof_ids(generation: Any, eos_id: int) -> list[int]:
  return list(generation.token_ids) + ([eos_id] if generation.finish_reason == "eos" else [])


def prove_batch(generator: Generator, prompts: PromptEncoder, items: Sequence[dict], k: int,
                max_new_tokens: int, sampling: Sampling, seed: int, first_index: int = 0,
                context: Sequence[int] = ()) -> list[Proof]:
  """The best of k sampled proofs of each item ({prompt, response_a, response_b, label}).
  Candidate j of item i samples with key (seed + 7 j, first_index + i), so a file proved in
  chunks gets the same proofs as in one call. `context` is empty_context(...)."""
  encoded, trimmed = prompts.encode(items)
  n = len(items)
  # One call: an item's k candidates share its prompt's prefill and cache.
  generated = generator.generate(
      [ids for _ in range(k) for ids in encoded], max_new_tokens, sampling,
      keys=[(seed + 7 * j, first_index + i) for j in range(k) for i in range(n)],
      first_index=first_index, field="prover prompts")
  candidates = [generated[j * n:(j + 1) * n] for j in range(k)]  # [j][i]: candidate j, item i
  conditional = unconditional = [[] for _ in range(n)]
  best = [0] * n
  if k > 1:
    eos = generator.tokenizer.eos_token_id
    proofs = [_proof_ids(candidates[j][i], eos) for j in range(k) for i in range(n)]
    given = generator.sequence_logprobs([encoded[i] for _ in range(k) for i in range(n)],
                                        proofs)
    alone = generator.sequence_logprobs([list(context)] * len(proofs), proofs)
    conditional = [[float(given[j * n + i]) for j in range(k)] for i in range(n)]
    unconditional = [[float(alone[j * n + i]) for j in range(k)] for i in range(n)]
    best = [select_proof(conditional[i], unconditional[i]) for i in range(n)]
  return [Proof(candidates[best[i]][i].text.strip() or "No rationale.", bool(trimmed[i]),
                tuple(encoded[i]), tuple(conditional[i]), tuple(unconditional[i]), best[i])
          for i in range(n)]


def proved_rows(generator: Generator, prompts, items: list[dict], first: int, k: int,
                max_new_tokens: int, sampling: Sampling, seed: int,
                context: list[int]) -> list[dict]:
  """One chunk of items ({prompt, response_a, response_b, label}; items `first`, …) with
  π_ψ's best of k sampled proofs (paper Eq. 5) as their rationale, and whether their
  prompt had to be cut."""
  proofs = prove_batch(generator, prompts, items, k, max_new_tokens, sampling, seed,
                               first, context)
  return [{**item, "rationale": proof.rationale, "prompt_trimmed": proof.trimmed}
          for item, proof in zip(items, proofs)]
