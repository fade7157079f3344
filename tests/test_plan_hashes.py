"""Every plan onnxprune writes for the models in models/ is byte-identical to the one recorded
before the pipeline was restructured (tests/plan_hashes.py says how they were made)."""

from __future__ import annotations

import json

import pytest

from tests.plan_hashes import HASHES, cases, plan_sha256

RECORDED: dict[str, str] = json.loads(HASHES.read_text())
CASES = cases()


def test_every_case_was_recorded():
    assert sorted(f"{rel}@{name}" for rel, name, _ in CASES) == sorted(RECORDED)


@pytest.mark.parametrize(("rel", "name", "kwargs"), CASES, ids=[f"{r}@{n}" for r, n, _ in CASES])
def test_plan_is_byte_identical(rel, name, kwargs, tmp_path):
    assert plan_sha256(rel, kwargs, tmp_path) == RECORDED[f"{rel}@{name}"]
