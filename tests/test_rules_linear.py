"""Channel rules of Gemm and MatMul: the reduction axis is `in`, the output axis `out`; a
MatMul of two run-time tensors pins its reduction axis."""

from __future__ import annotations

import pytest

from tests.rule_cases import (
    Case,
    check_pruning,
    check_structure,
    ids,
    runnable,
    shapes,
)

GRAPH_IN = ("<graph>", "input")
GRAPH_OUT = ("<graph>", "output")
SCORES = ("scores", "MatMul")


def gemm_pair(x: str, w1: str, b1: str, fc1: str, w2: str, fc2: str, y: str, b2: str = "") -> str:
    bias2 = f", float[{b2}] b2" if b2 else ""
    return f"""g (float[{x}] x) => (float[{y}] y) <float[{w1}] w1, float[{b1}] b1, float[{w2}] w2{bias2}> {{
    [fc1] h = {fc1}
    [act] r = Relu (h)
    [fc2] y = {fc2}
}}"""


CASES = [
    # -- Gemm
    Case(
        "gemm-transB-bias-rank-1",
        gemm_pair(
            "2, 6",
            "8, 6",
            "8",
            "Gemm <transB = 1, alpha = 0.5> (x, w1, b1)",
            "3, 8",
            "Gemm <transB = 1, beta = 2.0> (r, w2, b2)",
            "2, 3",
            b2="3",
        ),
        groups=1,
        prunable={"w1:0": 8, "b1:0": 8, "w2:1": 8},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT, "b2:0": GRAPH_OUT},
        ratios=(0.5, 0.3),
        check=shapes(w1=[4, 6], b1=[4], w2=[3, 4], b2=[3]),
    ),
    Case(
        "gemm-bias-rank-2",
        gemm_pair("2, 6", "6, 8", "1, 8", "Gemm (x, w1, b1)", "8, 3", "Gemm (r, w2, b2)", "2, 3", b2="2, 3"),
        groups=1,
        prunable={"w1:1": 8, "b1:1": 8, "w2:0": 8},
        pinned={"w1:0": GRAPH_IN, "b2:1": GRAPH_OUT, "b2:0": GRAPH_OUT},
        check=shapes(w1=[6, 4], b1=[1, 4], w2=[4, 3], b2=[2, 3]),
    ),
    Case(
        "gemm-transA",
        gemm_pair("6, 2", "6, 8", "8", "Gemm <transA = 1> (x, w1, b1)", "8, 3", "Gemm (r, w2)", "2, 3"),
        groups=1,
        prunable={"w1:1": 8, "b1:0": 8, "w2:0": 8},
        pinned={"w1:0": GRAPH_IN, "w2:1": GRAPH_OUT},
    ),
    Case(
        # the weight is the left operand: Y = W @ X, rows of W are the outputs
        "gemm-weight-on-the-left",
        gemm_pair("6, 2", "8, 6", "8, 1", "Gemm (w1, x, b1)", "3, 8", "Gemm (w2, r)", "3, 2"),
        groups=1,
        prunable={"w1:0": 8, "b1:0": 8, "w2:1": 8},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT},
        check=shapes(w1=[4, 6], b1=[4, 1], w2=[3, 4]),
    ),
    Case(
        "gemm-dynamic-batch",
        gemm_pair(
            "N, 6",
            "8, 6",
            "8",
            "Gemm <transB = 1> (x, w1, b1)",
            "3, 8",
            "Gemm <transB = 1> (r, w2, b2)",
            "N, 3",
            b2="3",
        ),
        groups=1,
        prunable={"w1:0": 8, "w2:1": 8},
        pinned={"w2:0": GRAPH_OUT},
        ratios=(0.5, 0.3),
    ),
    Case(
        "gemm-scalar-bias",
        gemm_pair(
            "2, 6", "8, 6", "1", "Gemm <transB = 1> (x, w1, b1)", "3, 8", "Gemm <transB = 1> (r, w2)", "2, 3"
        ),
        groups=1,
        prunable={"w1:0": 8, "w2:1": 8},
        check=shapes(b1=[1]),
    ),
    # -- MatMul with a constant weight
    Case(
        "matmul-3d-activation",
        """g (float[2, 5, 6] x) => (float[2, 5, 3] y) <float[6, 8] w1, float[8] b1, float[8, 3] w2> {
        [mm1] m = MatMul (x, w1)
        [bias] h = Add (m, b1)
        [act] r = Relu (h)
        [mm2] y = MatMul (r, w2)
    }""",
        groups=1,
        prunable={"w1:1": 8, "b1:0": 8, "w2:0": 8},
        pinned={"w1:0": GRAPH_IN, "w2:1": GRAPH_OUT},
        ratios=(0.5, 0.3),
        check=shapes(w1=[6, 4], b1=[4], w2=[4, 3]),
    ),
    Case(
        "matmul-dynamic-batch",
        """g (float[N, 5, 6] x) => (float[N, 5, 3] y) <float[6, 8] w1, float[8, 3] w2> {
        [mm1] h = MatMul (x, w1)
        [act] r = Gelu (h)
        [mm2] y = MatMul (r, w2)
    }""",
        opset=20,
        groups=1,
        prunable={"w1:1": 8, "w2:0": 8},
    ),
    Case(
        "matmul-weight-on-the-left",
        """g (float[2, 6, 5] x) => (float[2, 3, 5] y) <float[8, 6] w1, float[3, 8] w2> {
        [mm1] h = MatMul (w1, x)
        [act] r = Relu (h)
        [mm2] y = MatMul (w2, r)
    }""",
        groups=1,
        prunable={"w1:0": 8, "w2:1": 8},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT},
    ),
    # -- MatMul of two run-time tensors: the contracted axis is pinned
    Case(
        "matmul-two-activations",
        """g (float[1, 5, 6] x) => (float[1, 5, 5] y) <float[6, 8] wq, float[6, 8] wk> {
        [q] q = MatMul (x, wq)
        [k] k = MatMul (x, wk)
        [kt] kt = Transpose <perm = [0, 2, 1]> (k)
        [scores] y = MatMul (q, kt)
    }""",
        groups=0,
        pinned={"wq:1": SCORES, "wk:1": SCORES},
    ),
    Case(
        # attention without heads: q.k contracts (pinned), v passes through the scores to the output
        "matmul-attention-value-path",
        """g (float[1, 5, 6] x) => (float[1, 5, 3] y)
        <float[6, 8] wq, float[6, 8] wk, float[6, 4] wv, float[4, 3] wo> {
        [q] q = MatMul (x, wq)
        [k] k = MatMul (x, wk)
        [kt] kt = Transpose <perm = [0, 2, 1]> (k)
        [scores] s = MatMul (q, kt)
        [prob] p = Softmax <axis = -1> (s)
        [v] v = MatMul (x, wv)
        [ctx] c = MatMul (p, v)
        [out] y = MatMul (c, wo)
    }""",
        groups=1,
        prunable={"wv:1": 4, "wo:0": 4},
        pinned={"wq:1": SCORES, "wk:1": SCORES},
        check=shapes(wq=[6, 8], wk=[6, 8], wv=[6, 2], wo=[2, 3]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
