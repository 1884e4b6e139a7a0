"""Publishing: the model card renders the evaluation table, and the upload sends the exported
files, checked against a local stand-in for the Hub API (no network)."""
import base64
import json
import os
import socket
import subprocess
import sys

import pytest
from aiohttp import web

from gram_jax.hf import hub
from gram_jax.judge_card import Reasoning, write_judge_card
from tests.helpers import cli, hf_fixtures
from tests.helpers.stand_in_http import serving

REPORT = "| file | overall |\n|---|---|\n| rewardbench | 91.2 |"


class StandInHub:
  """Answers the Hub endpoints an upload uses and records the files of each commit."""

  def __init__(self):
    self.files, self.calls, self.created = {}, [], []

  async def handle(self, request: web.Request) -> web.Response:
    path = request.path
    self.calls.append(f"{request.method} {path}")
    if path == "/api/repos/create":
      body = await request.json()
      self.created.append(body)
      return web.json_response({"url": f"{request.url.origin()}/{body['organization']}/"
                                       f"{body['name']}"})
    if path == "/api/validate-yaml":
      return web.json_response({})
    if path.endswith("/preupload/main"):
      body = await request.json()
      return web.json_response({"files": [
          {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
          for f in body["files"]]})
    if path.endswith("/commit/main"):
      repo = path.removeprefix("/api/models/").removesuffix("/commit/main")
      for line in (await request.text()).splitlines():
        item = json.loads(line)
        if item["key"] == "file":
          self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
      return web.json_response({"commitUrl": f"{request.url.origin()}/{repo}/commit/{'a' * 40}",
                                "commitOid": "a" * 40})
    return web.json_response({"error": f"stand-in does not know {path}"}, status=404)

  def app(self) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", self.handle)
    return app


@pytest.fixture()
def exported(tmp_path):
  path = str(tmp_path / "model")
  hf_fixtures.make_hf_model("llama3_tied", path, with_tokenizer=True)
  write_judge_card(path, "PROMPT {user_input}", ("A", "B"), Reasoning())
  (tmp_path / "eval").mkdir()
  (tmp_path / "eval" / "report.md").write_text(REPORT)
  return path, str(tmp_path / "eval")


def convert(src, dst, *extra, env=None):
  return subprocess.run([sys.executable, "-m", "gram_jax.convert", f"--src={src}",
                         f"--dst={dst}", "--to=hf", *extra], cwd=cli.ROOT,
                        env={**cli.main_env(), **(env or {})}, capture_output=True, text=True,
                        timeout=300)


def test_model_card_renders_the_evaluation_table(exported):
  path, eval_dir = exported
  card = hub.model_card(path, "org/gram-tiny", "meta-llama/Llama-3.2-3B-Instruct",
                        ["pretrain", "self_train"], ["hh-rlhf"], eval_dir)
  assert card.startswith("---\nlibrary_name: transformers")
  assert "base_model: meta-llama/Llama-3.2-3B-Instruct" in card
  assert REPORT in card and "GRAM-R²" in card and "self_train" in card
  assert 'from_pretrained("org/gram-tiny")' in card


def test_push_sends_the_exported_files(exported, tmp_path):
  path, eval_dir = exported
  stand_in = StandInHub()
  with serving(stand_in.app()) as url:
    result = convert(path, tmp_path / "out", "--push_to_hub=org/gram-tiny", "--private",
                     "--stages=self_train", f"--eval_report={eval_dir}",
                     env={"HF_ENDPOINT": url, "HF_TOKEN": "hf_test",
                          "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"})
  assert result.returncode == 0, result.stderr[-3000:]
  created = stand_in.created[0]
  assert created.get("private") is True or created.get("visibility") == "private", created
  out = tmp_path / "out"
  local = {name for name in os.listdir(out)}
  assert set(stand_in.files) == local
  assert {"README.md", "config.json", "judge.json", "model.safetensors"} <= local
  for name in local:
    assert stand_in.files[name] == (out / name).read_bytes()
  assert REPORT.encode() in stand_in.files["README.md"]


def test_push_without_token_or_network_is_one_line(exported, tmp_path):
  path, _ = exported
  no_token = convert(path, tmp_path / "a", "--push_to_hub=org/x",
                     env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf_home")})
  assert no_token.returncode == 1
  assert cli.error_line(no_token) == "error: no Hugging Face token: set HF_TOKEN or run " \
                                     "`hf auth login`"
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
  offline = convert(path, tmp_path / "b", "--push_to_hub=org/x",
                    env={"HF_TOKEN": "hf_test", "HF_ENDPOINT": closed})
  assert offline.returncode == 1
  assert cli.error_line(offline).startswith(f"error: push to {closed}/org/x failed")
