"""Small modules with one job each: no source file of the package over 600 lines, no function
body over 80 (the statements after its docstring: a public entry point's keyword list and its
documentation are not what makes a function hard to follow)."""

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
        f"{node.name} ({_body_lines(node)} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's end."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_a_long_body_is_found_and_a_docstring_is_not_counted():
    doc = '    """' + "\n" * 100 + '    """\n'
    short = ast.parse("def f():\n" + doc + "    return 1\n").body[0]
    long = ast.parse("def f():\n" + "    x = 1\n" * 81).body[0]
    assert _body_lines(short) == 1 and _body_lines(long) == 81


def test_the_sources_were_found():
    assert len(SOURCES) > 30
