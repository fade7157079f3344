"""The package's layers, checked on the import statements of its modules (parsed, not run).

    4  analysis engine (analysis.dependency, the analysis package), passes, metrics
    3  op table (optable)
    2  op knowledge: channel rules (analysis.flow, index_map, registry, rules.*), rewriters,
       MAC formulas (macs)
    1  graph queries and graph utilities: graph, weights, shapeinfer, folding, plan (data)
    0  errors

A module imports only modules of its own layer or below; modules not listed (io, importance,
selection, pipeline, validate, bench, cli, ...) sit above all of these and may import any of
them. `metrics` and the passes do not import each other. Below the application layer, no
function imports an `onnxprune` module: a dependency is visible at the top of its module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS: dict[str, int] = {
    "onnxprune.errors": 0,
    "onnxprune.graph": 1,
    "onnxprune.weights": 1,
    "onnxprune.shapeinfer": 1,
    "onnxprune.folding": 1,
    "onnxprune.plan": 1,
    "onnxprune.branches": 1,
    "onnxprune.surgeon": 1,
    "onnxprune.analysis.flow": 2,
    "onnxprune.analysis.index_map": 2,
    "onnxprune.analysis.registry": 2,
    "onnxprune.analysis.rules": 2,
    "onnxprune.rewriters": 2,
    "onnxprune.macs": 2,
    "onnxprune.optable": 3,
    "onnxprune.analysis": 4,
    "onnxprune.analysis.dependency": 4,
    "onnxprune.passes": 4,
    "onnxprune.metrics": 4,
}
TOP = 99
# entry points that defer imports until a subcommand needs them (fast `onnxprune --help`)
LAZY_ENTRY_POINTS = {"onnxprune.cli", "onnxprune.__main__"}
APART = [("onnxprune.metrics", "onnxprune.passes"), ("onnxprune.passes", "onnxprune.metrics")]


def package_modules() -> dict[str, Path]:
    """Module name -> source file, for onnxprune/ and passes/ (installed as onnxprune.passes)."""
    found = {}
    for base, package in ((ROOT / "onnxprune", "onnxprune"), (ROOT / "passes", "onnxprune.passes")):
        for path in sorted(base.rglob("*.py")):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = package_modules()


def layer(module: str) -> int:
    """The layer of `module`: that of the longest listed name it is, or is inside."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in LAYERS:
            return LAYERS[name]
    return TOP


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported onnxprune module, line, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nested = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per dot after the first
                parent = package.split(".")
                base = ".".join([*parent[: len(parent) - node.level + 1], base]).strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found += [(n, node.lineno, id(node) in nested) for n in names if n.split(".")[0] == "onnxprune"]
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str):
    own = layer(module)
    upward = [
        f"line {line}: {name} (layer {layer(name)})"
        for name, line, _ in imports(MODULES[module], module)
        if layer(name) > own
    ]
    assert not upward, f"{module} (layer {own}) imports from above: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in LAZY_ENTRY_POINTS))
def test_no_function_level_imports_of_the_package(module: str):
    inside = [f"line {line}: {name}" for name, line, nested in imports(MODULES[module], module) if nested]
    assert not inside, f"{module} imports inside functions: {inside}"


@pytest.mark.parametrize(("importer", "imported"), APART)
def test_metrics_and_passes_do_not_import_each_other(importer: str, imported: str):
    bad = [
        (m, name)
        for m, path in MODULES.items()
        if m == importer or m.startswith(importer + ".")
        for name, _, _ in imports(path, m)
        if name == imported or name.startswith(imported + ".")
    ]
    assert not bad, bad


def test_the_checker_sees_an_upward_import(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from onnxprune.passes import PassManager\n")
    (found,) = imports(source, "onnxprune.graph")
    assert found[0] == "onnxprune.passes" and found[2] and layer(found[0]) > layer("onnxprune.graph")


def test_every_listed_layer_names_a_module():
    assert all(name in MODULES for name in LAYERS), sorted(set(LAYERS) - set(MODULES))
