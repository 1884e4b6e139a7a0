"""Hostile HF and PEFT files: malformed safetensors headers, configs and adapters are each one
line naming the file and what is wrong, checked before anything is allocated or built (some
allocated 119-256 GiB first, `num_hidden_layers: 100000` built for minutes, overlapping
offsets and an int8 tensor in a float slot loaded silently, an adapter without its B matrices
merged as a no-op)."""
import json
import os
import struct
import time

import pytest

import gram_jax
from gram_jax.hf import peft, safetensors_io
from tests.helpers import cli
from tests.reliability.test_bad_input import hf_dir  # noqa: F401 (a fixture)
from tests.reliability.test_nonfinite_weights import _adapter


def _write_raw(path: str, header, data: bytes) -> None:
  encoded = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)) + encoded + data)


def _edit_header(hf_dir: str, edit) -> None:
  """Rewrites model.safetensors with `edit(header)` applied, the data section unchanged."""
  path = os.path.join(hf_dir, "model.safetensors")
  with open(path, "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(size))
    data = f.read()
  _write_raw(path, edit(header), data)


def _entry(name: str):
  def edit(header, **changes):
    header[name] = {**header[name], **changes}
    return header
  return edit


NORM = "model.norm.weight"


@pytest.mark.parametrize("edit,message", [
    (lambda h: [h], "its header is not a JSON object"),
    (lambda h: _entry(NORM)(h, data_offsets=[-8, 120]), r"data_offsets \[-8, 120\] lie outside"),
    (lambda h: _entry(NORM)(h, shape=[1_000_000, 1_000_000]),
     r"shape \[1000000, 1000000\] F32 is 4,000,000,000,000 bytes"),
    (lambda h: _entry(NORM)(h, shape=[-32]), r"shape \[-32\] is not a list of non-negative"),
    (lambda h: _entry(NORM)(h, shape="32"), "shape '32' is not a list"),
    (lambda h: _entry(NORM)(h, dtype="F8_E9"), "unsupported dtype 'F8_E9'"),
    (lambda h: _entry(NORM)(h, data_offsets=h["model.layers.0.mlp.up_proj.weight"]
                            ["data_offsets"][:1] * 2), "data_offsets .* is not|inconsistent"),
    (lambda h: _entry(NORM)(h, data_offsets=[0, 128]), "overlap"),
    (lambda h: _entry(NORM)(h, dtype="I8", data_offsets=[h[NORM]["data_offsets"][0],
                                                      h[NORM]["data_offsets"][0] + 32]),
     "has dtype I8; a weight needs a float"),
])
def test_a_malformed_safetensors_header_is_one_line(hf_dir, edit, message):
  _edit_header(hf_dir, edit)
  with pytest.raises(gram_jax.GramError, match=f"model.safetensors.*{message}"):
    gram_jax.load_pretrained(hf_dir)


def test_a_header_claiming_more_bytes_than_the_file_is_refused_unread(tmp_path):
  path = str(tmp_path / "x.safetensors")
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", 1 << 40) + b"{}")
  with pytest.raises(gram_jax.GramError, match="its header claims 1,099,511,627,776 bytes"):
    safetensors_io.read_header(path)


@pytest.mark.parametrize("changes,message", [
    ({"num_hidden_layers": 100_000}, r"tensor 'model.layers.2\..*' is missing"),
    ({"hidden_size": [32]}, "config.json: int.. argument must be"),
    ({"intermediate_size": 1e400}, "config.json: cannot convert float infinity"),
])
def test_a_malformed_config_is_one_line_before_anything_is_built(hf_dir, changes, message):
  config_path = os.path.join(hf_dir, "config.json")
  config = {**json.load(open(config_path)), **changes}
  open(config_path, "w").write(json.dumps(config).replace("Infinity", "1e400"))
  start = time.monotonic()
  with pytest.raises(gram_jax.GramError, match=message):
    gram_jax.load_pretrained(hf_dir)
  assert time.monotonic() - start < 20


def test_an_index_that_is_not_a_weight_map_is_one_line(hf_dir):
  with open(os.path.join(hf_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"weight_map": ["model.safetensors"]}, f)
  with pytest.raises(gram_jax.GramError, match="model.safetensors.index.json: not a "
                     "safetensors index"):
    gram_jax.load_pretrained(hf_dir)


def test_an_adapter_without_its_b_matrices_is_refused(tmp_path, hf_dir):
  model = gram_jax.load_pretrained(hf_dir)
  path = _adapter(tmp_path, model, 8.0, 0.1)
  weights = os.path.join(path, "adapter_model.safetensors")
  header, start = safetensors_io.read_header(weights)
  kept = {n: safetensors_io.read_tensor(weights, e, start, n) for n, e in header.items()
          if ".lora_B." not in n}
  safetensors_io.write_file(weights, [(n, t.shape, t.dtype, lambda t=t: t)
                                      for n, t in kept.items()])
  with pytest.raises(gram_jax.GramError, match=r"holds '.*lora_A.weight' but not "
                     r"'.*lora_B.weight'; each LoRA module needs both matrices"):
    peft.apply_adapter(model, path)


def test_the_cli_answers_a_malformed_file_with_one_line(hf_dir, tmp_path):
  _edit_header(hf_dir, lambda h: _entry(NORM)(h, data_offsets=[0, 128]))
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
  result = cli.run_main("configs/evaluate.py", f"--config.workdir={tmp_path / 'eval'}",
                        f"--config.model.path={hf_dir}", f"--config.eval.files={pairs}")
  line = cli.error_line(result)
  assert "model.safetensors: tensors" in line and "overlap in the file" in line, line
  assert "Traceback" not in result.stderr
