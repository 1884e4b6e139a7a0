"""An exported model reads the same in transformers 4.x and 5.x: config (rope theta, llama3
rope scaling), tokenizer class and chat template, and logits on a chat-rendered prompt, for
the Llama (llama3 scaling), Qwen2 and Qwen3 shapes. transformers 4.x runs in a subprocess
from a cached folder (tests/helpers/legacy_transformers.py); the test skips only when PyPI
cannot be reached to fetch it."""
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import gram_jax
from gram_jax.text import tokenizer as tok
from tests.helpers import hf_fixtures, legacy_transformers

FAMILIES = ("llama3_tied", "qwen2", "qwen3")
QUESTION = "Which response is better, A or B? Explain why."

READ_WITH_TRANSFORMERS4 = r"""
import json, sys
import torch, transformers
assert transformers.__version__.startswith("4."), transformers.__version__
out = {}
for path in sys.argv[2:]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": sys.argv[1]}],
                                        add_generation_prompt=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    out[path] = {"version": transformers.__version__, "ids": list(ids),
                 "extra_ids": tokenizer.encode("<|extra_1|>", add_special_tokens=False),
                 "special": tokenizer.additional_special_tokens,
                 "logits": logits.tolist(), "rope_theta": model.config.rope_theta,
                 "rope_scaling": model.config.rope_scaling}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
  """Each family made in transformers 5.x, loaded by gram_jax, exported by gram_jax."""
  paths = {}
  for family in FAMILIES:
    source = str(tmp_path_factory.mktemp(f"{family}_source"))
    hf_fixtures.make_hf_model(family, source, with_tokenizer=True)
    paths[family] = str(tmp_path_factory.mktemp(f"{family}_export"))
    tokenizer = tok.load_tokenizer(source)
    if family == "qwen3":  # extra special tokens, as real Llama and Qwen tokenizers have
      tokenizer.add_special_tokens({"additional_special_tokens": ["<|extra_0|>",
                                                                  "<|extra_1|>"]})
    gram_jax.save_pretrained(gram_jax.load_pretrained(source), paths[family],
                             tokenizer=tokenizer)
  return paths


def _relative(ours, theirs) -> float:
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def test_exports_read_the_same_in_transformers_4_and_5(exports):
  site = legacy_transformers.transformers4()
  if site is None:
    pytest.skip("transformers 4.x needs PyPI once (tests/helpers/legacy_transformers.py)")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
  result = subprocess.run([sys.executable, "-c", READ_WITH_TRANSFORMERS4, QUESTION,
                           *exports.values()], capture_output=True, text=True, env=env,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  legacy = json.loads(result.stdout.strip().splitlines()[-1])
  for family, path in exports.items():
    read = legacy[path]
    assert read["version"].startswith("4.")
    config = json.load(open(os.path.join(path, "config.json")))
    assert read["rope_theta"] == config["rope_parameters"]["rope_theta"]
    if family == "llama3_tied":
      assert read["rope_scaling"]["rope_type"] == "llama3"
      assert read["rope_scaling"]["original_max_position_embeddings"] == 8
    tokenizer = tok.load_tokenizer(path)
    ids = tok.encode_user_turn(tokenizer, "{input}", {"input": QUESTION})
    assert read["ids"] == ids  # same tokenizer and chat template in 4.x
    extra = tokenizer.encode("<|extra_1|>", add_special_tokens=False)
    assert read["extra_ids"] == extra  # one special token in both majors, where there is one
    if family == "qwen3":
      assert len(extra) == 1 and read["special"] == ["<|extra_0|>", "<|extra_1|>"]
      assert tokenizer.extra_special_tokens == ["<|extra_0|>", "<|extra_1|>"]  # and in 5.x
    ours = np.asarray(gram_jax.load_pretrained(path)(jnp.asarray([ids])))[0]
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
      current = model(torch.tensor([ids])).logits[0].numpy()
    assert _relative(ours, current) <= 1e-4, f"{family}: transformers {transformers.__version__}"
    assert _relative(ours, read["logits"]) <= 1e-4, f"{family}: transformers {read['version']}"
