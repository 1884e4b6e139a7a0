"""`python -m gram_jax.convert`: HF -> Orbax -> HF gives back the same tensors and model."""
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import torch

import gram_jax
from tests.helpers import hf_fixtures


def _convert(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "gram_jax.convert", *args],
                        capture_output=True, text=True, timeout=300)


def test_convert_cli_orbax_round_trip(tmp_path):
  src = str(tmp_path / "hf")
  hf_fixtures.make_hf_model("llama3_tied", src, with_tokenizer=True)
  ckpt, back = str(tmp_path / "ckpt"), str(tmp_path / "back")
  result = _convert(f"--src={src}", f"--dst={ckpt}", "--to=orbax")
  assert result.returncode == 0, result.stderr
  result = _convert(f"--src={ckpt}", f"--dst={back}", "--to=hf")
  assert result.returncode == 0, result.stderr
  original, returned = hf_fixtures.read_safetensors_dir(src), hf_fixtures.read_safetensors_dir(back)
  assert sorted(original) == sorted(returned)
  assert all(torch.equal(original[k], returned[k]) for k in original)
  a = gram_jax.load_pretrained(src)
  b = gram_jax.load_pretrained(ckpt)
  ids, mask = hf_fixtures.padded_batch()
  np.testing.assert_array_equal(np.asarray(a(jnp.asarray(ids), jnp.asarray(mask))),
                                np.asarray(b(jnp.asarray(ids), jnp.asarray(mask))))
  assert os.path.isfile(os.path.join(back, "tokenizer.json"))
