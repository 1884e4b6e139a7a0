"""Every command the README, launch notes, docs and config docstrings show parses as written:
the config file and preset exist, every `--config.` override names a field with a value of
its type, every other flag is one the module defines; a command that needs no file of the
user's also passes the start-up checks. The real-model command runs in
tests/cli/test_real_model.py."""
import ast
import glob
import importlib
import os
import re
import sys

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from gram_jax import configlib
from gram_jax.config.model import MODEL_PRESETS, OFFLINE_MODELS, SMOLLM2, SMOLLM2_BUILD
from gram_jax.errors import GramError
from gram_jax.models import families
from gram_jax.hf import smollm2
from tests.helpers import doc_commands
from tests.helpers.cli import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ml_collections

COMMANDS = doc_commands.commands()
STAGE_COMMANDS = [(doc, args) for doc, module, args in COMMANDS if module == "gram_jax.main"]
OTHER_COMMANDS = [(doc, module, args) for doc, module, args in COMMANDS
                  if module != "gram_jax.main"]
# Overrides that name a user's own model, data or key: such a command shows a placeholder.
USER_FILES = re.compile(r"--config\.(model\.path|tokenizer\.path|data\.train_files|eval\.files|"
                        r"self_train\.\w+_files|serve\.api_key_file|serve\.reference_model|"
                        r"best_of_n\.(input|output))=")


def load_config(args: list[str]):
  """The config `python -m gram_jax.main ARGS` runs (ml_collections reads the overrides from
  sys.argv)."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True)
  argv = ["main", *args]
  saved, sys.argv = sys.argv, argv
  try:
    values(argv)
  finally:
    sys.argv = saved
  return values.config


def test_the_documents_show_the_main_commands():
  shown = {tuple(args) for _, args in STAGE_COMMANDS}
  assert ("--config=configs/self_train.py",) in shown
  assert ("--config=configs/self_train.py:smoke",) in shown
  assert ("--config=configs/finetune.py:smollm2-135m",) in shown
  assert len(STAGE_COMMANDS) >= 15 and OTHER_COMMANDS


@pytest.mark.parametrize("doc,args", STAGE_COMMANDS,
                         ids=[f"{doc}:{' '.join(args)[:60]}" for doc, args in STAGE_COMMANDS])
def test_a_documented_stage_command_parses_and_starts(doc, args, tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  config = load_config(args)
  if any(USER_FILES.match(arg) for arg in args) or (
      config.model.path and config.model.path != smollm2.hf_dir()):
    return  # a placeholder for the user's own files: parsing is what can be checked
  config.workdir = str(tmp_path / "workdir")
  if config.model.path and not os.path.isdir(config.model.path):
    with pytest.raises(GramError, match=r"smollm2\.smollm2_instruct\(\)"):
      configlib.validate(config)
    return
  configlib.validate(config)


def _defined_flags(module: str) -> set[str]:
  source = open(os.path.join(ROOT, *module.split(".")) + ".py", encoding="utf-8").read()
  return set(re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", source))


@pytest.mark.parametrize("doc,module,args", OTHER_COMMANDS,
                         ids=[f"{doc}:{m} {' '.join(a)[:50]}" for doc, m, a in OTHER_COMMANDS])
def test_a_documented_tool_command_names_only_its_flags(doc, module, args):
  defined = _defined_flags(module)
  for arg in args:
    assert arg.startswith("--"), f"{doc}: {module} takes flags only, got {arg!r}"
    name = arg[2:].split("=")[0]
    assert name in defined or (name.startswith("no") and name[2:] in defined), \
        f"{doc}: {module} has no flag --{name}"


@pytest.mark.parametrize("config_file", sorted(glob.glob("configs/*.py", root_dir=ROOT)))
def test_every_stage_takes_every_model_preset(config_file, monkeypatch):
  monkeypatch.chdir(ROOT)
  for preset in MODEL_PRESETS:
    config = load_config([f"--config={config_file}:{preset}"])
    assert config.model.init.family in families.RECORDS
  for preset, (hf_dir, _) in OFFLINE_MODELS.items():
    offline = load_config([f"--config={config_file}:{preset}"])
    assert offline.model.path == hf_dir() and offline.data.cutoff_len == 1024
  assert OFFLINE_MODELS[SMOLLM2][0] is smollm2.hf_dir


def test_the_smoke_preset_is_the_main_job_made_small(monkeypatch):
  monkeypatch.chdir(ROOT)
  full = load_config(["--config=configs/self_train.py"])
  smoke = load_config(["--config=configs/self_train.py:smoke"])
  assert smoke.self_train.rounds == 1 and smoke.template.judge == full.template.judge
  for field in ("prover_steps", "policy_steps", "unlabeled_pairs", "heldout_pairs"):
    assert smoke.self_train[field] < full.self_train[field]
  with pytest.raises(GramError, match=r"unknown preset 'smok'; did you mean 'smoke'\?"):
    load_config(["--config=configs/self_train.py:smok"])


def test_the_start_up_line_names_the_preset_model_mesh_and_prompt(monkeypatch, tmp_path):
  monkeypatch.chdir(ROOT)
  config = load_config(["--config=configs/finetune.py:smollm2-135m",
                        "--config.template.judge=Judge A or B.\nAnswer:"])
  line = configlib.describe(config, "configs/finetune.py:smollm2-135m")
  devices = len(jax.devices())  # the test session's (conftest: 8 host devices)
  assert line.startswith(f"run: stage finetune | config configs/finetune.py:smollm2-135m | "
                         f"model {smollm2.hf_dir()} | {devices} cpu device(s), 1 process(es), "
                         f"mesh data=1 fsdp={devices} tensor=1 | ")
  assert "prompt template given as text (21 characters), chat template the tokenizer's own" \
      in line


_BENCH = re.compile(r"python (bench/\w+\.py)((?: --?[\w.-]+(?:=\S*)?)*)")


def _bench_commands() -> list[tuple[str, str, list[str]]]:
  found = []
  for name in ["BENCHMARKS.md", *doc_commands.documents()]:
    text = (open(os.path.join(ROOT, name), encoding="utf-8").read() if name.endswith(".md")
            else doc_commands.documents()[name])
    for line in doc_commands.joined_lines(text.replace("`", " ")):
      for script, arguments in _BENCH.findall(line):
        found.append((name, script, arguments.split()))
  return found


BENCH_COMMANDS = _bench_commands()


@pytest.mark.parametrize("doc,script,args", BENCH_COMMANDS,
                         ids=[f"{d}:{s} {' '.join(a)[:40]}" for d, s, a in BENCH_COMMANDS])
def test_a_documented_benchmark_command_names_its_script_and_flags(doc, script, args):
  path = os.path.join(ROOT, script)
  assert os.path.isfile(path), f"{doc}: {script} does not exist"
  defined = {"help"} | set(re.findall(r"add_argument\(\s*\"--(\w+)\"",
                                      open(path, encoding="utf-8").read()))
  for arg in args:
    assert arg[2:].split("=")[0] in defined, f"{doc}: {script} has no flag {arg.split('=')[0]}"


_SNIPPET = re.compile(r"""python -c (?:"([^"]+)"|'([^']+)')""")
SNIPPETS = [(name, double or single) for name, text in doc_commands.documents().items()
            for double, single in _SNIPPET.findall(text)]
SNIPPETS += [("gram_jax/configlib.py (a start-up hint)", SMOLLM2_BUILD)]
SNIPPETS += [(name, line.strip()) for name, text in doc_commands.documents().items()
             for line in text.splitlines()
             if re.match(r"\s*(from gram_jax[\w.]* import [\w, ]+|import gram_jax[\w.]*)$", line)]
_SERVER = open(os.path.join(ROOT, "gram_jax", "serving", "server.py"), encoding="utf-8").read()
ROUTES = set(re.findall(r'web\.(?:post|get)\("([^"]+)"', _SERVER))


def test_documented_server_paths_and_verl_functions_exist():
  from gram_jax.serving import rlhf_adapters
  texts = doc_commands.documents()
  paths = {(name, path) for name, text in texts.items()
           for path in re.findall(r"(?:localhost|judge|127\.0\.0\.1):\d+(/[\w/]+)", text)}
  assert paths and all(path in ROUTES for _, path in paths), sorted(paths)
  functions = {(name, function) for name, text in texts.items()
               for function in re.findall(r"custom_reward_function\.name=(\w+)|name=(verl_\w+)",
                                          text) for function in function if function}
  assert functions and all(hasattr(rlhf_adapters, f) for _, f in functions), sorted(functions)


@pytest.mark.parametrize("doc,snippet", SNIPPETS, ids=[f"{d}:{s[:50]}" for d, s in SNIPPETS])
def test_a_documented_python_snippet_names_modules_and_attributes_that_exist(doc, snippet):
  """`python -c "..."` lines: every module they import exists and every attribute they use
  of it is defined (checked without running them: one downloads a model)."""
  tree = ast.parse(snippet)
  names = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        names[alias.asname or alias.name.split(".")[0]] = importlib.import_module(
            alias.name if alias.asname else alias.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom):
      module = importlib.import_module(node.module)
      for alias in node.names:
        assert hasattr(module, alias.name), f"{doc}: {node.module} has no {alias.name}"
        names[alias.asname or alias.name] = getattr(module, alias.name)
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
        node.value.id in names:
      assert hasattr(names[node.value.id], node.attr), \
          f"{doc}: {node.value.id} has no attribute {node.attr}"
