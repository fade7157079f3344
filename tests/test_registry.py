"""The op rule registry: one rule per op, duplicates refused, every op documented and tested."""

from __future__ import annotations

import re

import pytest

from onnxprune.analysis import register, registered_ops
from tests.conftest import ROOT


def test_every_registered_op_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("|"))
    missing = [op for _, op in registered_ops() if not re.search(rf"\b{op}\b", table)]
    assert not missing, f"ops with a rule but not in README's table: {missing}"


def test_duplicate_registration_is_refused():
    with pytest.raises(RuntimeError, match="already registered"):
        register("Relu")(lambda node, ctx: None)
