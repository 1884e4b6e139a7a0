"""Section `serve` (stage serve): the address, key, batching, limits and deadlines of the
reward server; rules of its fields; view: the request limits the server enforces."""
import dataclasses

import ml_collections

from gram_jax.config.rules import Rule, at_least, one_of, positive
from gram_jax.serving.request_parsing import Limits


def add_defaults(c: ml_collections.ConfigDict) -> None:
  c.serve = ml_collections.ConfigDict(dict(
      host="127.0.0.1",              # loopback unless you say otherwise (then a key is required)
      port=8000,
      api_key_env="GRAM_JAX_API_KEY",  # environment variable holding the key; unset = open
      api_key_file="",               # or a file holding it (wins over api_key_env)
      batch_size=16,                 # prompts per jitted call
      max_len=0,                     # tokens of one judging prompt (longer pairs are trimmed);
                                     # 0: the judge's budget (release: 6,144), else 2,048
      max_batch_pairs=64,            # pairs gathered across requests into one batch
      max_wait_ms=5.0,               # how long a batch waits for more requests
      max_body_bytes=4 << 20,
      max_pairs=256,                 # pairs / responses / completions in one request
      max_text_chars=100_000,        # one prompt or response
      max_input_tokens=8192,         # one judging prompt before trimming (else 413)
      max_comparisons=2048,          # pairs one /rank or /group_reward may ask for
      max_queue_pairs=4096,          # pairs waiting for the device (else 503 + Retry-After)
      max_queued_calls=16,           # device calls waiting (chat, references, raw scoring)
      max_host_queue=64,             # requests waiting for the tokenizer (else 503)
      request_timeout_s=120.0,       # each request's deadline, queueing included
      body_timeout_s=30.0,           # to receive a request body (slow clients: 408)
      max_connections=256,           # open connections (beyond: the longest idle one, with no
                                     # request in progress, is closed for the newcomer, else 503)
      max_connections_per_peer=128,  # from one address (beyond: that address's own longest
                                     # idle one makes room, else 503; 0: off)
      header_timeout_s=10.0,         # a connection's first complete request header, at latest
      keepalive_s=30.0,              # a kept-alive connection idle this long is closed
      max_new_tokens=1024,           # /v1/chat/completions max_tokens
      max_choices=8,                 # /v1/chat/completions n
      max_new_shapes_per_minute=4,   # new compiled chat shapes (n, max_tokens, stops) a
                                     # minute; a request needing one more: 503 + Retry-After
      grace_s=20.0,                  # SIGTERM: in-flight requests get this long (k8s: 30 s)
      warm_up=True,                  # compile every scoring shape before listening
      reference_model="",            # fallback reference for /reward samples without labels:
      reference_max_new_tokens=512,  # this frozen policy's greedy answer (not the paper's
      reference_cache=10_000,        # current-policy reference: clients should send that)
      rlhf_readout="probability",    # a reasoning judge's RLHF rewards: probability (P(A)/P(B)
                                     # after the rationale) | verdict (vote shares)
      model_name="",                 # the OpenAI `model` field; "": from model.path, skipping
                                     # folder names like hf/ or a checkpoint step
  ))


RULES: dict[str, Rule] = {
    "serve.rlhf_readout": one_of("probability", "verdict"),
    "serve.keepalive_s": positive,
    "serve.header_timeout_s": positive,
    "serve.max_new_shapes_per_minute": at_least(1),
}


def limits(c: ml_collections.ConfigDict) -> Limits:
  """The request limits of `serve`, as the server reads them."""
  return Limits(**{f.name: c.serve[f.name] for f in dataclasses.fields(Limits)})
