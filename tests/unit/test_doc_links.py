"""Every relative link of README.md, CHANGELOG.md and docs/ points at a file that exists, and
no document cites a text the repository does not hold."""
import glob
import os
import re

import pytest

from tests.helpers.cli import ROOT

DOCUMENTS = ["README.md", "CHANGELOG.md", "BENCHMARKS.md", "RELIABILITY.md",
             *sorted(glob.glob("docs/*.md", root_dir=ROOT))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS)
def test_relative_links_resolve(document):
  text = open(os.path.join(ROOT, document), encoding="utf-8").read()
  base = os.path.dirname(os.path.join(ROOT, document))
  broken = [target for target in LINK.findall(text)
            if "://" not in target and not os.path.exists(os.path.join(base, target))]
  assert not broken, f"{document}: {broken}"


def test_the_readme_is_a_front_door():
  lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
  assert len(lines) <= 120


def test_code_and_docs_cite_the_method_page_not_an_absent_spec():
  sources = glob.glob("gram_jax/**/*.py", root_dir=ROOT, recursive=True) + DOCUMENTS
  citing = [path for path in sources
            if "SPEC.md" in open(os.path.join(ROOT, path), encoding="utf-8").read()]
  assert not citing
