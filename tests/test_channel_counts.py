"""Every op that stores channel counts has a rewriter, checked on what pruning really changes.

Each rule case is pruned; every node of the pruned model is compared with the same node of the
normalized input. A node whose integer attribute or integer constant input changed must be an
op whose table entry declares that attribute or input as a channel count and has a rewriter
(building the table refuses a declared count without one), or a shape computation (a Concat
piece) that feeds such a declared input. An op whose count changes without a declaration, or
changes through a rewriter nobody declared, fails here; one whose count should change but does
not fails the mask-equivalence parity of its rule case.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxprune
from onnxprune.graph import consumers, default_opset
from onnxprune.optable import OpTable, default_op_table
from onnxprune.passes import PassManager, normalization_passes
from tests.rule_cases import Case, ids
from tests.test_rule_coverage import all_cases

CASES = all_cases()

# Ops the ONNX spec gives channel-count attributes or inputs, with the ones onnxprune rewrites:
# written out here, apart from the table, so that losing a declaration fails a test.
STORES_COUNTS = {
    "Conv": {"group"},
    "ConvTranspose": {"group"},
    "Split": {"split", "num_outputs", 1},
    "Slice": {"starts", "ends", 1, 2},
    "Reshape": {1},
    "Expand": {1},
    "Resize": {3},
    "Attention": {"q_num_heads", "kv_num_heads"},
    "RotaryEmbedding": {"num_heads"},
    "LSTM": {"hidden_size"},
    "GRU": {"hidden_size"},
    "RNN": {"hidden_size"},
}


def normalized(model: onnx.ModelProto) -> onnx.ModelProto:
    work = onnx.ModelProto()
    work.CopyFrom(model)
    PassManager(normalization_passes()).run(work)
    return work


def _int_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    }


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {
        a.name: helper.get_attribute_value(a)
        for a in node.attribute
        if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)
    }


def changed_counts(
    before: onnx.ModelProto, after: onnx.ModelProto, sliced: set[str]
) -> list[tuple[onnx.NodeProto, str | int]]:
    """(node of `after`, attribute name or input index) for every integer attribute or integer
    constant input that differs from the same node (same op, same first output) of `before`;
    inputs that are weights the plan slices (integer data read per channel, Gather indices) are
    data, not counts."""
    old_nodes = {(n.op_type, n.output[0]): n for n in before.graph.node if n.output}
    old_consts, new_consts = _int_constants(before), _int_constants(after)
    found = []
    for node in after.graph.node:
        old = old_nodes.get((node.op_type, node.output[0]))
        if old is None:
            continue  # a node the rewriters cloned for one reader
        old_attrs, new_attrs = _attrs(old), _attrs(node)
        found += [
            (node, name)
            for name in sorted(set(old_attrs) | set(new_attrs))
            if old_attrs.get(name) != new_attrs.get(name)
        ]
        for index in range(max(len(old.input), len(node.input))):
            if index < len(old.input) and old.input[index] in sliced:
                continue
            a = old_consts.get(old.input[index]) if index < len(old.input) else None
            b = new_consts.get(node.input[index]) if index < len(node.input) else None
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                found.append((node, index))
    return found


def sliced_tensors(result: onnxprune.PruneResult) -> set[str]:
    return {s.tensor for s in result.plan.slices}


def _declares(table: OpTable, node: onnx.NodeProto, count: str | int, opset: int) -> bool:
    entry = table.lookup(node.domain, node.op_type, opset)
    return entry is not None and count in entry.counts and entry.rewriter is not None


def _feeds_a_declared_count(table: OpTable, model: onnx.ModelProto, node: onnx.NodeProto, opset: int) -> bool:
    """True when an output of `node` reaches, through shape arithmetic, a declared count input."""
    readers = consumers(model.graph.node)
    todo, seen = list(node.output), set()
    while todo:
        tensor = todo.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for reader in readers.get(tensor, ()):
            if any(
                _declares(table, reader, i, opset) for i, name in enumerate(reader.input) if name == tensor
            ):
                return True
            todo.extend(reader.output)
    return False


def undeclared_changes(before: onnx.ModelProto, result: onnxprune.PruneResult, table: OpTable) -> list[str]:
    """Descriptions of the count changes in the pruned model that `table` does not account for."""
    after = result.model
    opset = default_opset(after)
    bad = []
    for node, count in changed_counts(before, after, sliced_tensors(result)):
        if _declares(table, node, count, opset) or _feeds_a_declared_count(table, after, node, opset):
            continue
        what = f"attribute '{count}'" if isinstance(count, str) else f"input {count}"
        bad.append(f"{node.op_type} '{node.name or node.output[0]}' changed {what}")
    return bad


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_every_changed_count_is_declared_and_rewritten(case: Case):
    model = case.model()
    result = onnxprune.prune(model, ratio=case.ratios[0], exclude=case.exclude)
    bad = undeclared_changes(normalized(model), result, default_op_table())
    assert not bad, f"{case.id}: counts changed by an op without a declared count and rewriter: {bad}"


def test_the_check_fails_when_a_declaration_is_missing():
    (case,) = [c for c in CASES if any(op == "Split" for _, op in c.op_types())][:1]
    model = case.model()
    result = onnxprune.prune(model, ratio=case.ratios[0], exclude=case.exclude)
    before = normalized(model)
    assert any(
        node.op_type == "Split" for node, _ in changed_counts(before, result.model, sliced_tensors(result))
    )
    table = default_op_table()
    forgetful = OpTable(replace(e, counts=()) if e.op_type == "Split" else e for e in table.entries())
    assert any("Split" in line for line in undeclared_changes(before, result, forgetful))
    assert not undeclared_changes(before, result, table)


@pytest.mark.parametrize("op_type", sorted(STORES_COUNTS))
def test_ops_known_to_store_counts_declare_them_and_have_a_rewriter(op_type: str):
    entry = default_op_table().lookup("", op_type, 21)
    assert entry is not None and entry.rewriter is not None, f"{op_type} has no rewriter"
    assert STORES_COUNTS[op_type] <= set(entry.counts), f"{op_type} declares only {entry.counts}"


def test_every_declared_count_is_changed_by_some_case():
    """A declaration no case exercises is untested: each declared op has a case that changes a
    count of it."""
    seen: set[str] = set()
    for case in CASES:
        if not case.rewrites:
            continue
        model = case.model()
        result = onnxprune.prune(model, ratio=case.ratios[0], exclude=case.exclude)
        seen |= {
            node.op_type
            for node, _ in changed_counts(normalized(model), result.model, sliced_tensors(result))
        }
    declared = {e.op_type for e in default_op_table().entries() if e.counts}
    assert declared <= seen, f"ops with declared counts no case changes: {sorted(declared - seen)}"
