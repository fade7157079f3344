"""Control flow (If, Loop, Scan): its inputs and outputs and every tensor a body reads from the
enclosing graph are pinned, and the layers before and after still prune with parity."""

from __future__ import annotations

import pytest

from tests.rule_cases import Case, check_pruning, check_structure, ids, runnable, shapes

CHAIN = """[fc1] h = Gemm (x, w1)
    [act] r = Relu (h)
    [fc2] y = Gemm (r, w2)"""

IF = f"""g (float[3, 6] x, bool c) => (float[3, 2] z) <float[6, 8] w1, float[8, 2] w2> {{
    {CHAIN}
    [branch] z = If (c) <
        then_branch = then_g () => (float[3, 2] a) {{ a = Relu (y) }},
        else_branch = else_g () => (float[3, 2] b) {{ b = Sigmoid (y) }}>
}}"""

IF_READS_WEIGHT = f"""g (float[3, 6] x, bool c) => (float[3, 2] z)
    <float[6, 8] w1, float[8, 2] w2, float[2, 2] m> {{
    {CHAIN}
    [branch] z = If (c) <
        then_branch = then_g () => (float[3, 2] a) {{ a = MatMul (y, m) }},
        else_branch = else_g () => (float[3, 2] b) {{ b = Identity (y) }}>
}}"""

LOOP = f"""g (float[3, 6] x, int64 n, bool c) => (float[3, 2] z) <float[6, 8] w1, float[8, 2] w2> {{
    {CHAIN}
    [repeat] z = Loop (n, c, y) <
        body = body_g (int64 i, bool ci, float[3, 2] v) => (bool co, float[3, 2] v2) {{
            co = Identity (ci)
            v2 = Tanh (v)
        }}>
}}"""

SCAN = f"""g (float[3, 6] x) => (float[2] last, float[3, 2] z) <float[6, 8] w1, float[8, 2] w2,
    float[2] s0 = {{0.0, 0.0}}> {{
    {CHAIN}
    [scan] last, z = Scan (s0, y) <num_scan_inputs = 1,
        body = body_g (float[2] s, float[2] e) => (float[2] s2, float[2] o) {{
            s2 = Add (s, e)
            o = Identity (s2)
        }}>
}}"""

PINNED_BY = {
    "if": ("branch", "If"),
    "loop": ("repeat", "Loop"),
    "scan": ("scan", "Scan"),
}

CASES = [
    Case(
        "if-branches-pin-what-they-read",
        IF,
        groups=1,
        prunable={"w1:1": 8, "w2:0": 8},
        pinned={"w2:1": PINNED_BY["if"], "w1:0": ("<graph>", "input")},
        check=shapes(w1=[6, 4], w2=[4, 2]),
    ),
    Case(
        "if-branch-reads-an-outer-weight",
        IF_READS_WEIGHT,
        groups=1,
        prunable={"w1:1": 8, "w2:0": 8},
        pinned={"w2:1": PINNED_BY["if"], "m:0": None, "m:1": None},
        check=shapes(w1=[6, 4], w2=[4, 2], m=[2, 2]),
    ),
    Case(
        "loop-carried-value-pinned",
        LOOP,
        groups=1,
        prunable={"w1:1": 8, "w2:0": 8},
        pinned={"w2:1": PINNED_BY["loop"]},
        check=shapes(w1=[6, 4], w2=[4, 2]),
    ),
    Case(
        "scan-input-pinned",
        SCAN,
        groups=1,
        prunable={"w1:1": 8, "w2:0": 8},
        pinned={"w2:1": PINNED_BY["scan"], "s0:0": None},
        check=shapes(w1=[6, 4], w2=[4, 2]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
