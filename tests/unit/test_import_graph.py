"""The package's imports form a layered graph: no cycle, imports run downward only, and
nothing under inference/ or training/ imports a stage; the judging engine (inference/) never
imports the HTTP service built on it (serving/)."""
import ast
import os

import gram_jax

PACKAGE = os.path.dirname(gram_jax.__file__)


def _module_name(path: str) -> str:
  relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-len(".py")]
  parts = relative.split(os.sep)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
  if not node.level:
    return node.module or ""
  base = module.split(".")
  base = base if is_package else base[:-1]
  base = base[:len(base) - node.level + 1]
  return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
  """module -> the gram_jax modules it imports (at any depth of its code)."""
  files = {}
  for folder, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        files[_module_name(path)] = path
  graph = {}
  for module, path in files.items():
    tree = ast.parse(open(path, encoding="utf-8").read())
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = _resolve(module, node, path.endswith("__init__.py"))
        for alias in node.names:
          full = f"{base}.{alias.name}"
          targets.add(full if full in files else base)
    graph[module] = {t for t in targets if t in files and t != module}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph[node]):
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        found = visit(target)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_cycle_finder_finds_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, " -> ".join(cycle)


# Lowest first. A module imports only modules of its own layer or below (docs/layout.md).
LAYERS = (
    ("gram_jax.errors", "gram_jax.parallel", "gram_jax.preemption", "gram_jax.cli_util",
     "gram_jax.progress", "gram_jax.models", "gram_jax.storage", "gram_jax.provenance",
     "gram_jax.workdir_lock"),
    ("gram_jax.text", "gram_jax.judge_card", "gram_jax.hf", "gram_jax.journal",
     "gram_jax.checkpoint", "gram_jax.inference.ranking"),
    ("gram_jax.data", "gram_jax.pretrained"),
    ("gram_jax.training", "gram_jax.inference", "gram_jax.pseudo_labels", "gram_jax.position_bias"),
    ("gram_jax.serving",),
    ("gram_jax.config", "gram_jax.configlib"),
    ("gram_jax.stages",),
    ("gram_jax.main", "gram_jax.convert", "gram_jax"),
)


def layer(module: str) -> int:
  matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS)
             for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
  assert matches, f"{module} is in no layer: add it to LAYERS"
  return max(matches)[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  return sorted(f"{module} -> {target}" for module, targets in graph.items()
                for target in targets if layer(target) > layer(module))


def test_the_layer_check_finds_an_upward_import():
  assert upward_imports({"gram_jax.text.tokenizer": {"gram_jax.stages.common"}}) == [
      "gram_jax.text.tokenizer -> gram_jax.stages.common"]
  assert upward_imports({"gram_jax.stages.common": {"gram_jax.text.tokenizer"}}) == []


def test_imports_run_downward_only():
  assert upward_imports(import_graph()) == []


def test_inference_and_training_import_no_stage_and_not_each_other():
  wrong = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                 for target in targets
                 if module.startswith(("gram_jax.inference", "gram_jax.training")) and
                 target.startswith(("gram_jax.stages", "gram_jax.inference" if
                                    module.startswith("gram_jax.training") else
                                    "gram_jax.training")))
  assert wrong == []
