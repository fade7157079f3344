"""Every op with a channel rule is exercised by at least one case of the rule tests, so a rule
added without a case fails here."""

from __future__ import annotations

from onnxprune.optable import default_op_table
from tests import (
    test_rules_attention,
    test_rules_conv,
    test_rules_elementwise,
    test_rules_layout,
    test_rules_linear,
    test_rules_normalization,
    test_rules_recurrent,
    test_rules_reduce,
    test_rules_vocabulary,
)
from tests.rule_cases import Case

FAMILIES = {
    "conv": test_rules_conv.CASES,
    "linear": test_rules_linear.CASES,
    "normalization": test_rules_normalization.CASES,
    "elementwise": test_rules_elementwise.CASES,
    "layout": test_rules_layout.CASES,
    "reduce": test_rules_reduce.CASES,
    "attention": test_rules_attention.CASES,
    "recurrent": test_rules_recurrent.CASES,
    "vocabulary": test_rules_vocabulary.CASES,
}


def all_cases() -> list[Case]:
    return [case for cases in FAMILIES.values() for case in cases]


def test_every_registered_op_has_a_case():
    covered = set().union(*(case.op_types() for case in all_cases()))
    missing = [f"{d or 'ai.onnx'}::{op}" for d, op in default_op_table().ops() if (d, op) not in covered]
    assert not missing, f"ops with a channel rule but no case in tests/test_rules_*.py: {missing}"


def test_every_registered_op_has_a_case_onnx_runtime_runs():
    covered = set().union(*(case.op_types() for case in all_cases() if case.runs))
    missing = [op for d, op in default_op_table().ops() if (d, op) not in covered]
    assert not missing, f"ops whose cases are all analysis-only (no pruning run): {missing}"


def test_case_ids_are_unique():
    seen: dict[str, str] = {}
    for family, cases in FAMILIES.items():
        for case in cases:
            assert case.id not in seen, f"case id {case.id!r} in both {seen[case.id]} and {family}"
            seen[case.id] = family
