"""The op table: one entry per (domain, op type, opset range), built explicitly from module
lists; duplicates, rewriters or formulas without a rule, and ops that store channel counts
without a rewriter are refused; lookups honour opset ranges; every op is documented."""

from __future__ import annotations

import re
import types

import onnx
import pytest

from onnxprune.analysis.registry import channel_rule, rule_specs
from onnxprune.macs import macs_of
from onnxprune.optable import OpEntry, OpTable, OpTableError, default_op_table
from onnxprune.rewriters import rewrites
from tests.conftest import ROOT


def _rule(node, ctx):
    return None


def _rewriter(node, edit):
    return []


def test_every_op_in_the_table_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("|"))
    missing = [op for _, op in default_op_table().ops() if not re.search(rf"\b{op}\b", table)]
    assert not missing, f"ops with a rule but not in README's table: {missing}"


def test_the_default_table_is_built_once_and_shared():
    assert default_op_table() is default_op_table()


def test_duplicate_entry_is_refused():
    with pytest.raises(OpTableError, match="already registered"):
        OpTable([OpEntry("Relu", rule=_rule), OpEntry("Relu", domain="ai.onnx", rule=_rule)])


def test_overlapping_opset_ranges_are_refused_and_disjoint_ones_kept():
    with pytest.raises(OpTableError, match="already registered"):
        OpTable(
            [OpEntry("Split", opsets=(1, 13), rule=_rule), OpEntry("Split", opsets=(13, None), rule=_rule)]
        )
    kept = OpTable(
        [OpEntry("Split", opsets=(1, 12), rule=_rule), OpEntry("Split", opsets=(13, None), rule=_rule)]
    )
    assert len(kept.entries()) == 2


def test_lookup_honours_opset_ranges():
    def old(node, ctx):
        return None

    def new(node, ctx):
        return None

    table = OpTable([OpEntry("Split", opsets=(1, 12), rule=old), OpEntry("Split", opsets=(13, 17), rule=new)])
    assert table.lookup("", "Split", 11).rule is old
    assert table.lookup("ai.onnx", "Split", 13).rule is new
    assert table.lookup("", "Split", 17).rule is new
    assert table.lookup("", "Split", 18) is None
    assert table.lookup("com.example", "Split", 13) is None


def test_an_entry_that_stores_counts_without_a_rewriter_is_refused():
    with pytest.raises(OpTableError, match="without a rewriter"):
        OpTable([OpEntry("Split", rule=_rule, counts=("split", 1))])
    OpTable([OpEntry("Split", rule=_rule, counts=("split", 1), rewriter=_rewriter)])


def test_building_from_modules_refuses_a_count_declaring_rule_without_a_rewriter():
    rules = types.ModuleType("fake_rules")
    rules.split = channel_rule("Split", counts=("split",))(_rule)
    rules.split.__module__ = rules.__name__
    with pytest.raises(OpTableError, match="without a rewriter"):
        OpTable.from_modules([rules])


def test_building_from_modules_joins_rewriters_and_formulas_by_op():
    rules = types.ModuleType("fake_rules")
    fixes = types.ModuleType("fake_fixes")

    @channel_rule("Conv", counts=("group",), per_channel=(2,))
    @channel_rule("Relu", opsets=(6, None))
    def rule(node, ctx):
        return None

    @rewrites("Conv")
    def fix(node, edit):
        return []

    @macs_of("Conv")
    def formula(node, shapes):
        return 0

    for fn, module in ((rule, rules), (fix, fixes), (formula, fixes)):
        fn.__module__ = module.__name__
        setattr(module, fn.__name__, fn)
    table = OpTable.from_modules([rules], [fixes], [fixes])
    conv = table.lookup("", "Conv", 17)
    assert (conv.rule, conv.rewriter, conv.macs, conv.counts) == (rule, fix, formula, ("group",))
    assert conv.reads_per_channel(2) and not conv.reads_per_channel(1)
    assert table.lookup("", "Relu", 5) is None and table.lookup("", "Relu", 6).rewriter is None
    assert [s.op_type for s in rule_specs(rule)] == ["Conv", "Relu"]


def test_a_rewriter_for_an_op_without_a_rule_is_refused():
    rules = types.ModuleType("fake_rules")
    fixes = types.ModuleType("fake_fixes")
    fixes.fix = rewrites("Split")(_rewriter)
    fixes.fix.__module__ = fixes.__name__
    with pytest.raises(OpTableError, match="no channel rule"):
        OpTable.from_modules([rules], [fixes])


def test_a_second_rewriter_for_one_op_is_refused():
    fixes = types.ModuleType("fake_fixes")

    @rewrites("Split")
    def one(node, edit):
        return []

    @rewrites("Split")
    def two(node, edit):
        return []

    for fn in (one, two):
        fn.__module__ = fixes.__name__
        setattr(fixes, fn.__name__, fn)
    with pytest.raises(OpTableError, match="already registered"):
        OpTable.from_modules([], [fixes])


def test_functions_a_module_imports_are_not_read_as_its_own():
    # the rule modules import helpers from each other; only functions they define count
    from onnxprune.analysis.rules import conv

    imported = types.ModuleType("imports_conv")
    imported.conv = conv.conv
    assert OpTable.from_modules([imported]).ops() == []


def test_the_analyzer_uses_the_table_it_is_given():
    from onnxprune.analysis import analyze_model
    from onnxprune.passes import PassManager, normalization_passes
    from tests.rule_cases import build

    model = build(
        """g (float[1, 3, 4, 4] x) => (float[1, 2, 4, 4] y) <float[4, 3, 1, 1] w1, float[2, 4, 1, 1] w2>
        { h = Conv(x, w1)  r = Relu(h)  y = Conv(r, w2) }"""
    )
    PassManager(normalization_passes()).run(model)
    assert analyze_model(model).prunable_groups
    without_relu = OpTable(e for e in default_op_table().entries() if e.op_type != "Relu")
    pinned = analyze_model(model, table=without_relu)
    assert not pinned.prunable_groups
    assert any(b.op_type == "Relu" and "no channel rule" in b.reason for b in pinned.barriers)


def test_entries_know_their_per_channel_inputs():
    table = default_op_table()
    assert table.lookup("", "BatchNormalization", 15).per_channel == (1, 2, 3, 4)
    assert table.lookup("", "Add", 14).reads_per_channel(0)
    assert not table.lookup("", "Pow", 15).reads_per_channel(1)
    assert table.lookup("", "Conv", 11).reads_per_channel(2)
    assert onnx.defs.has("Conv")
