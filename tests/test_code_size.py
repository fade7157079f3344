"""Small modules with one job each: no source file of the package over 600 lines, no function
over 80 (counted from its `def` line to its last line, docstring included)."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
SOURCES = sorted([*(ROOT / "onnxprune").rglob("*.py"), *(ROOT / "passes").rglob("*.py")])


def _rel(path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_source_file_size(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, f"{_rel(path)}: split it into modules with one job each"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_sources_were_found():
    assert len(SOURCES) > 30
