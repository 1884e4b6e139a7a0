"""The commands the documentation tells a user to type: every `python -m gram_jax.<module>`
line of README.md, launch/README.md, docs/*.md and the configs' docstrings, with its
backslash continuations joined, environment assignments and trailing comments dropped."""
import ast
import glob
import os
import re
import shlex

from tests.helpers.cli import ROOT

_COMMAND = re.compile(r"(?:^|[\s;&|(#])python -m (gram_jax\.\w+)(.*)$")


def documents() -> dict[str, str]:
  """Each document's text: the Markdown files, and each config file's docstring."""
  texts = {}
  for path in ["README.md", "launch/README.md", *sorted(glob.glob("docs/**/*.md",
                                                                  root_dir=ROOT,
                                                                  recursive=True))]:
    if os.path.isfile(os.path.join(ROOT, path)):
      texts[path] = open(os.path.join(ROOT, path), encoding="utf-8").read()
  for path in sorted(glob.glob("configs/*.py", root_dir=ROOT)):
    source = open(os.path.join(ROOT, path), encoding="utf-8").read()
    texts[path] = ast.get_docstring(ast.parse(source)) or ""
  return texts


def joined_lines(text: str) -> list[str]:
  lines, current = [], ""
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith("#") and current:  # a comment line inside a continued command
      continue
    current = f"{current} {stripped}" if current else stripped
    if current.endswith("\\"):
      current = current[:-1].rstrip()
      continue
    lines.append(current)
    current = ""
  return lines + ([current] if current else [])


def commands() -> list[tuple[str, str, list[str]]]:
  """(document, module, arguments) of every documented gram_jax command."""
  found = []
  for name, text in documents().items():
    for line in joined_lines(text):
      match = _COMMAND.search(line)
      if not match:
        continue
      rest = match.group(2).split(" # ")[0].split("  #")[0]
      if match.group(0).lstrip().startswith("#"):  # a command shown inside a comment
        rest = rest.split(" #")[0]
      found.append((name, match.group(1), shlex.split(rest, comments=False)))
  return found
