"""The arrows of ARCHITECTURE.md hold: no package imports one above it, and no private name crosses a
package border.

Read from the source with ``ast`` (nothing is imported, and imports inside functions count), so a new
loop fails here the day it is written. ``LAYERS`` is ARCHITECTURE.md's table, lowest first: a package
imports only packages below it. Entries that a higher package registers for a lower one's registry
(CLIP's model and objective) are found by name (``fairjax.registry``), not by import.
"""

import ast
import collections
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fairjax")
# Top-level modules that are the shared base (paths, registries, the command runner, markdown tables)
# count as one package, '(base)'; fairjax.main is the command on top of everything.
BASE_MODULES = ("paths", "registry", "cli", "markdown")
# ARCHITECTURE.md's packages, lowest first.
LAYERS = ("(base)", "metrics", "data", "ops", "models", "report", "audit", "postprocess", "erasure", "train",
          "clip", "explain", "(main)")


def _package_of(module: str) -> str:
  parts = module.split(".")
  if len(parts) == 1:
    return "(base)"
  if parts[1] in BASE_MODULES:
    return "(base)"
  if parts[1] == "main":
    return "(main)"
  return parts[1]


def _modules():
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        module = module[:-len(".__init__")] if module.endswith(".__init__") else module
        yield module, path


def _imports(path):
  """``(imported module, local alias or None, names imported from it)`` of every fairjax import."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fairjax":
      for alias in node.names:
        submodule = f"{node.module}.{alias.name}"
        # `from fairjax.x import y`: y is a module if fairjax/x/y.py (or y/) exists, else a name.
        is_module = os.path.exists(os.path.join(ROOT, *submodule.split(".")) + ".py") or os.path.isdir(
            os.path.join(ROOT, *submodule.split(".")))
        if is_module:
          found.append((submodule, alias.asname or alias.name, ()))
        else:
          found.append((node.module, None, (alias.name,)))
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split(".")[0] == "fairjax":
          found.append((alias.name, alias.asname, ()))
  return tree, found


def _graph():
  edges, where = collections.defaultdict(set), collections.defaultdict(list)
  for module, path in _modules():
    source = _package_of(module)
    for target_module, _, _ in _imports(path)[1]:
      target = _package_of(target_module)
      if target != source:
        edges[source].add(target)
        where[(source, target)].append(module)
  return edges, where


def test_every_package_imports_only_packages_below_it():
  edges, where = _graph()
  assert set(edges) <= set(LAYERS), f"packages missing from LAYERS (and ARCHITECTURE.md): {set(edges) - set(LAYERS)}"
  upward = {(source, target): where[(source, target)][:3] for source, targets in edges.items()
            for target in targets if LAYERS.index(target) > LAYERS.index(source)}
  assert not upward, f"imports of a higher package: {upward}"


def test_no_module_imports_in_a_circle():
  """Not even inside a package, and not even through an import inside a function."""
  modules = dict(_modules())
  graph = {module: {target for target, _, _ in _imports(path)[1] if target in modules and target != module}
           for module, path in modules.items()}
  circles, state = [], {}

  def visit(module, trail):
    state[module] = "open"
    for target in sorted(graph[module]):
      if state.get(target) == "open":
        circles.append(trail[trail.index(target):] + [target])
      elif target not in state:
        visit(target, trail + [target])
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  assert not circles, circles


def test_the_base_and_the_metrics_import_nothing_above_them():
  edges, where = _graph()
  for low in ("(base)", "metrics"):
    assert not edges[low] - {"(base)"}, (low, {t: where[(low, t)] for t in edges[low]})


def test_no_private_name_crosses_a_package_border():
  crossings = []
  for module, path in _modules():
    tree, imports = _imports(path)
    source = _package_of(module)
    foreign = {alias: target for target, alias, _ in imports if alias and _package_of(target) != source}
    for target, _, names in imports:
      if _package_of(target) != source:
        crossings += [f"{module}: from {target} import {n}" for n in names if n.startswith("_")]
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in foreign
          and node.attr.startswith("_") and not node.attr.startswith("__")):
        crossings.append(f"{module}: {foreign[node.value.id]}.{node.attr}")
  assert not crossings, crossings
