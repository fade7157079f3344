"""Channel rules of pooling, reductions, softmax-like and position-dependent ops, and shape
queries: each pins the axes it works along (or whose size it reads) and passes the others."""

from __future__ import annotations

import pytest

from onnxprune.analysis.rules.reduce import REDUCES
from tests.rule_cases import Case, between_convs, check_pruning, check_structure, ids, runnable

DYNAMIC = {"x": "N, 3, 8, 8", "y": "N, 2, 8, 8"}


def pinned_by(node: str, op: str) -> dict[str, tuple[str, str]]:
    """The producer's filters are pinned by `node`; the consumer's inputs by it or its output."""
    return {"w1:0": (node, op), "w2:1": None}


def reduce_case(op: str) -> Case:
    """A reduction over the spatial axes (axes as an input, opset 18): channels pass."""
    return Case(
        f"{op}-over-spatial-axes",
        between_convs(f"[reduce] n = {op} (h, axes)", weights=", int64[2] axes = {2, 3}", y="1, 2, 1, 1"),
        opset=18,
        groups=1,
        prunable={"w1:0": 4, "b1:0": 4, "w2:1": 4},
    )


POOLS = [
    ("MaxPool", "MaxPool <kernel_shape = [2, 2], strides = [2, 2]>", "1, 2, 4, 4"),
    ("AveragePool", "AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1]>", "1, 2, 8, 8"),
    ("LpPool", "LpPool <kernel_shape = [2, 2], strides = [2, 2], p = 2>", "1, 2, 4, 4"),
    ("GlobalAveragePool", "GlobalAveragePool", "1, 2, 1, 1"),
    ("GlobalMaxPool", "GlobalMaxPool", "1, 2, 1, 1"),
    ("GlobalLpPool", "GlobalLpPool <p = 3>", "1, 2, 1, 1"),
]

POOL_CASES = [
    Case(
        f"pool-{name}",
        between_convs(f"[pool] n = {op} (h)", y=y),
        groups=1,
        prunable={"w1:0": 4, "b1:0": 4, "w2:1": 4},
    )
    for name, op, y in POOLS
]

CASES = [
    *POOL_CASES,
    Case(
        "pool-MaxPool-dynamic-batch",
        between_convs("[pool] n = MaxPool <kernel_shape = [2, 2]> (h)", x="N, 3, 8, 8", y="N, 2, 7, 7"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
    ),
    Case(
        # the Indices output holds flat positions that count the channels
        "pool-MaxPool-with-indices",
        between_convs(
            "[pool] n, idx = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (h)",
            y="1, 2, 4, 4",
            outputs=", int64[1, 4, 4, 4] idx",
        ),
        groups=0,
        pinned={"w1:0": ("pool", "MaxPool"), "w2:1": ("pool", "MaxPool")},
    ),
    # -- reductions
    *[reduce_case(op) for op in REDUCES],
    Case(
        "ReduceMean-spatial-attribute-axes",
        between_convs("[reduce] n = ReduceMean <axes = [2, 3]> (h)", y="1, 2, 1, 1"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
    ),
    Case(
        "ReduceMean-spatial-keepdims-0",
        between_convs(
            "[reduce] n = ReduceMean <axes = [2, 3], keepdims = 0> (h)",
            y="1, 2",
            w2="float[2, 4] w2",
            tail="[fc] y = Gemm <transB = 1> (n, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "ReduceMean-over-channels",
        between_convs("[reduce] n = ReduceMean <axes = [1]> (h)", w2="float[2, 1, 1, 1] w2"),
        groups=0,
        pinned={"w1:0": ("reduce", "ReduceMean")},
    ),
    Case(
        "ReduceSum-over-channels-keepdims-0",
        between_convs(
            "[reduce] n = ReduceSum <keepdims = 0> (h, axes)",
            weights=", int64[1] axes = {1}",
            y="1, 8, 2",
            w2="float[8, 2] w2",
            tail="[mm] y = MatMul (n, w2)",
        ),
        groups=0,
        pinned={"w1:0": ("reduce", "ReduceSum")},
    ),
    Case(
        "ReduceMax-over-all-axes",
        between_convs(
            "[reduce] r = ReduceMax <keepdims = 1> (h)\n    [expand] n = Add (h, r)",
            w2="float[2, 4, 1, 1] w2",
        ),
        groups=0,
        pinned={"w1:0": ("reduce", "ReduceMax")},
    ),
    # -- softmax-like
    Case(
        "Softmax-over-channels",
        between_convs("[sm] n = Softmax <axis = 1> (h)"),
        groups=0,
        pinned={"w1:0": ("sm", "Softmax"), "w2:1": ("sm", "Softmax")},
    ),
    Case(
        "Softmax-over-width",
        between_convs("[sm] n = Softmax <axis = -1> (h)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        # before opset 13 the op normalizes over every axis from `axis` on
        "LogSoftmax-opset-11-from-height",
        between_convs("[sm] n = LogSoftmax <axis = 2> (h)"),
        opset=11,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "LogSoftmax-opset-11-from-channels",
        between_convs("[sm] n = LogSoftmax <axis = 1> (h)"),
        opset=11,
        groups=0,
        pinned=pinned_by("sm", "LogSoftmax"),
    ),
    Case(
        "Hardmax-over-width",
        between_convs("[hm] n = Hardmax <axis = 3> (h)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "Hardmax-over-channels",
        between_convs("[hm] n = Hardmax <axis = 1> (h)"),
        groups=0,
        pinned=pinned_by("hm", "Hardmax"),
    ),
    # -- position-dependent
    Case(
        "ArgMax-over-channels",
        between_convs(
            "[am] a = ArgMax <axis = 1> (h)\n    [float] n = Cast <to = 1> (a)", w2="float[2, 1, 1, 1] w2"
        ),
        groups=0,
        pinned={"w1:0": ("am", "ArgMax")},
    ),
    Case(
        "ArgMax-over-height",
        between_convs("[am] a = ArgMax <axis = 2> (h)\n    [float] n = Cast <to = 1> (a)", y="1, 2, 1, 8"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "ArgMin-over-width-keepdims-0",
        between_convs(
            "[am] a = ArgMin <axis = 3, keepdims = 0> (h)\n    [float] n = Cast <to = 1> (a)",
            y="1, 8, 2",
            w2="float[4, 2] w2",
            tail="[t] t = Transpose <perm = [0, 2, 1]> (n)\n    [mm] y = MatMul (t, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
    ),
    Case(
        "TopK-over-width",
        between_convs("[topk] n, i = TopK <axis = 3> (h, k)", weights=", int64[1] k = {4}", y="1, 2, 8, 4"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "TopK-over-channels",
        between_convs(
            "[topk] n, i = TopK <axis = 1> (h, k)", weights=", int64[1] k = {2}", w2="float[2, 2, 1, 1] w2"
        ),
        groups=0,
        pinned={"w1:0": ("topk", "TopK")},
    ),
    Case(
        "CumSum-over-height",
        between_convs("[cs] n = CumSum (h, axis)", weights=", int64 axis = {2}"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "CumSum-over-channels",
        between_convs("[cs] n = CumSum <reverse = 1> (h, axis)", weights=", int64 axis = {1}"),
        groups=0,
        pinned=pinned_by("cs", "CumSum"),
    ),
    Case(
        # time axis 0, batch axis 1: the channels sit on axis 2 between two transposes
        "ReverseSequence-over-height",
        between_convs(
            """[to_thnw] t = Transpose <perm = [2, 0, 1, 3]> (h)
    [rev] r = ReverseSequence <batch_axis = 1, time_axis = 0> (t, lens)
    [back] n = Transpose <perm = [1, 2, 0, 3]> (r)""",
            weights=", int64[1] lens = {5}",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "ReverseSequence-over-channels",
        between_convs(
            "[rev] r = ReverseSequence <batch_axis = 0, time_axis = 1> (h, lens)\n    [id] n = Identity (r)",
            weights=", int64[1] lens = {3}",
        ),
        groups=0,
        pinned=pinned_by("rev", "ReverseSequence"),
    ),
    # -- shape queries pin only the axes whose size is read at run time (batch is dynamic here)
    Case(
        "Shape-of-the-batch-axis",
        between_convs(
            "[shape] size = Shape <start = 0, end = 1> (h)\n    [id] n = Identity (h)",
            outputs=", int64[1] size",
            **DYNAMIC,
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "Shape-then-Gather-batch",
        between_convs(
            "[shape] s = Shape (h)\n    [pick] size = Gather (s, i)\n    [id] n = Identity (h)",
            weights=", int64[1] i = {0}",
            outputs=", int64[1] size",
            **DYNAMIC,
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "Shape-then-Slice-batch",
        between_convs(
            "[shape] s = Shape (h)\n    [pick] size = Slice (s, st, en)\n    [id] n = Identity (h)",
            weights=", int64[1] st = {0}, int64[1] en = {1}",
            outputs=", int64[1] size",
            **DYNAMIC,
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "Shape-then-Slice-channels",
        between_convs(
            "[shape] s = Shape (h)\n    [pick] size = Slice (s, st, en)\n    [id] n = Identity (h)",
            weights=", int64[1] st = {-3}, int64[1] en = {-1}",
            outputs=", int64[2] size",
            **DYNAMIC,
        ),
        groups=0,
        pinned={"w1:0": ("shape", "Shape")},
    ),
    Case(
        # the static channel count read at run time is folded to a constant first
        "Shape-then-Gather-static-channels",
        between_convs(
            "[shape] s = Shape (h)\n    [pick] size = Gather (s, i)\n    [id] n = Identity (h)",
            weights=", int64[1] i = {1}",
            outputs=", int64[1] size",
            **DYNAMIC,
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "Shape-is-a-graph-output",
        between_convs(
            "[shape] size = Shape (h)\n    [id] n = Identity (h)", outputs=", int64[4] size", **DYNAMIC
        ),
        groups=0,
        pinned={"w1:0": ("shape", "Shape")},
    ),
    Case(
        # the full shape is an output, and a Gather also reads one entry of it
        "Shape-is-a-graph-output-and-gathered",
        between_convs(
            "[shape] shape = Shape (h)\n    [pick] size = Gather (shape, i)\n    [id] n = Identity (h)",
            weights=", int64[1] i = {0}",
            outputs=", int64[4] shape, int64[1] size",
            **DYNAMIC,
        ),
        groups=0,
        pinned={"w1:0": ("shape", "Shape")},
        note=(
            "KNOWN GAP: the Shape rule sees only the Gather reading entry 0 and frees the channel "
            "axis, but the whole shape is also a graph output, so pruning changes that output. "
            "RuleContext (onnxprune/analysis/flow.py) cannot tell a rule that a tensor is a graph "
            "output; with an `is_graph_output(name)` there, `_axes_read` in rules/reduce.py must "
            "return every axis for a shape vector that is one."
        ),
    ),
    Case(
        "Size",
        between_convs("[size] size = Size (h)\n    [id] n = Identity (h)", outputs=", int64 size", **DYNAMIC),
        groups=0,
        pinned={"w1:0": ("size", "Size")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
