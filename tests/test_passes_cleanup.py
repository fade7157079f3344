"""Cleanup passes (passes/cleanup.py): dead node, initializer and value_info removal."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.passes import RemoveDeadNodes
from tests.pass_models import declare, parse, value_info

# -- RemoveDeadNodes ------------------------------------------------------------------------

DEAD_TEXT = """g (float[2, 4] x) => (float[2, 4] y) {
    h = Add (x, b)
    y = Relu (h)
    d = Sigmoid (x)
    e = Mul (d, c) }"""


def dead_model() -> onnx.ModelProto:
    model = parse(
        DEAD_TEXT,
        {
            "b": np.ones(4, np.float32),
            "c": np.ones(4, np.float32),
            "unused": np.ones(3, np.float32),
        },
    )
    for name in ("h", "d", "e"):
        declare(model, name, [2, 4])
    return model


def test_dead_nodes_initializers_and_value_info_are_removed():
    model = dead_model()
    result = RemoveDeadNodes()(model)
    assert [n.op_type for n in model.graph.node] == ["Add", "Relu"]
    assert [t.name for t in model.graph.initializer] == ["b"]
    assert list(value_info(model)) == ["h"]
    assert result.modified
    assert result.stats == {"nodes_removed": 2, "initializers_removed": 2}
    onnx.checker.check_model(model, full_check=True)


def test_a_dead_initializer_alone_is_a_modification():
    model = parse(
        "g (float[2] x) => (float[2] y) { y = Relu (x) }",
        {"unused": np.ones(2, np.float32)},
    )
    result = RemoveDeadNodes()(model)
    assert result.modified
    assert result.stats == {"nodes_removed": 0, "initializers_removed": 1}
    assert not model.graph.initializer


def test_a_live_graph_is_unmodified():
    model = dead_model()
    RemoveDeadNodes()(model)
    before = model.SerializeToString()
    result = RemoveDeadNodes()(model)
    assert not result.modified
    assert result.stats == {"nodes_removed": 0, "initializers_removed": 0}
    assert model.SerializeToString() == before


def test_initializers_read_by_a_subgraph_stay():
    # the If's branches read `b` and `c` from the outer scope: both stay, and the If node too
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Mul", ["x", "c"], ["f"])],
        "else",
        [],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Neg", ["x"], ["dead"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[
            numpy_helper.from_array(np.ones(2, np.float32), "b"),
            numpy_helper.from_array(np.ones(2, np.float32), "c"),
            numpy_helper.from_array(np.ones(2, np.float32), "unused"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    result = RemoveDeadNodes()(model)
    assert [n.op_type for n in model.graph.node] == ["If"]
    assert [t.name for t in model.graph.initializer] == ["b", "c"]
    assert result.stats == {"nodes_removed": 1, "initializers_removed": 1}
