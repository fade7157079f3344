"""Channel rules of elementwise ops: unary ops pass every axis through; broadcasting ops slice
per-channel constants with the channels and couple every producer they add together."""

from __future__ import annotations

import pytest

from onnxprune.analysis.rules.elementwise import UNARY
from tests.rule_cases import (
    Case,
    between_convs,
    check_pruning,
    check_structure,
    ids,
    one_group_holds,
    runnable,
    shapes,
)

# Unary ops, each as Conv -> [prelude] -> op -> [postlude] -> Conv. A prelude keeps the input
# inside the op's domain (no NaN or inf: a removed channel's NaN would survive masking as
# 0 * NaN); a postlude casts booleans back to float for the consumer conv.
SIGMOID, SOFTSIGN = "Sigmoid", "Softsign"
BOOL, FLOAT = "Cast <to = 9>", "Cast <to = 1>"
UNARY_SETUP: dict[str, dict] = {
    "LeakyRelu": {"op": "LeakyRelu <alpha = 0.2>"},
    "HardSigmoid": {"op": "HardSigmoid <alpha = 0.3, beta = 0.4>"},
    "Celu": {"op": "Celu <alpha = 2.0>"},
    "Gelu": {"op": 'Gelu <approximate = "tanh">', "opset": 20},
    "Mish": {"opset": 18},
    "Swish": {"opset": 24},
    "ThresholdedRelu": {"op": "ThresholdedRelu <alpha = 0.5>"},
    "Shrink": {"op": "Shrink <lambd = 0.5, bias = 0.1>"},
    "Log": {"pre": [SIGMOID]},
    "Sqrt": {"pre": [SIGMOID]},
    "Reciprocal": {"pre": [SIGMOID]},
    "Tan": {"pre": [SOFTSIGN]},
    "Asin": {"pre": [SOFTSIGN]},
    "Acos": {"pre": [SOFTSIGN]},
    "Atanh": {"pre": [SOFTSIGN]},
    "Acosh": {"pre": ["Cosh"]},
    "Not": {"pre": [BOOL], "post": [FLOAT]},
    "IsNaN": {"post": [FLOAT]},
    "IsInf": {"post": [FLOAT]},
    "Cast": {"op": "Cast <to = 11>", "post": [FLOAT]},
}


def unary_case(op: str) -> Case:
    setup = UNARY_SETUP.get(op, {})
    chain = [*setup.get("pre", []), setup.get("op", op), *setup.get("post", [])]
    lines, current = [], "h"
    for k, step in enumerate(chain):
        out = "n" if k == len(chain) - 1 else f"t{k}"
        name = "op" if step == setup.get("op", op) else f"step{k}"
        lines.append(f"[{name}] {out} = {step} ({current})")
        current = out
    return Case(
        f"unary-{op}",
        between_convs("\n    ".join(lines)),
        opset=setup.get("opset", 17),
        groups=1,
        prunable={"w1:0": 4, "b1:0": 4, "w2:1": 4},
    )


UNARY_CASES = [unary_case(op) for op in UNARY]


CASES = [
    *UNARY_CASES,
    Case(
        "clip-with-scalar-bounds",
        between_convs("[clip] n = Clip (h, lo, hi)", weights=", float lo = {-0.5}, float hi = {0.5}"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "clip-without-bounds",
        between_convs("[clip] n = Clip (h)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "dropout-with-mask",
        between_convs("[drop] n, mask = Dropout (h, ratio)", weights=", float ratio = {0.25}"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    # -- broadcasting against constants
    Case(
        "add-per-channel-constant",
        between_convs("[add] n = Add (h, c)", weights=", float[4, 1, 1] c"),
        groups=1,
        prunable={"w1:0": 4, "c:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=shapes(c=[2, 1, 1]),
    ),
    Case(
        "mul-per-channel-constant-rank-4",
        between_convs("[mul] n = Mul (h, c)", weights=", float[1, 4, 1, 1] c"),
        groups=1,
        prunable={"c:1": 4, "w2:1": 4},
        check=shapes(c=[1, 2, 1, 1]),
    ),
    Case(
        "add-full-shape-constant",
        between_convs("[add] n = Add (c, h)", weights=", float[1, 4, 8, 8] c"),
        groups=1,
        prunable={"c:1": 4, "w2:1": 4},
        check=shapes(c=[1, 2, 8, 8]),
    ),
    Case(
        "sub-scalar-constant",
        between_convs("[sub] n = Sub (c, h)", weights=", float c"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=shapes(c=[]),
    ),
    Case(
        "div-per-channel-constant",
        between_convs("[div] n = Div (h, c)", weights=", float[4, 1, 1] c"),
        positive=("c",),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
    ),
    Case(
        "pow-per-channel-exponent",
        between_convs("[sig] s = Sigmoid (h)\n    [pow] n = Pow (s, c)", weights=", float[4, 1, 1] c"),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
    ),
    Case(
        "max-min-per-channel-constants",
        between_convs(
            "[max] m = Max (h, lo)\n    [min] n = Min (m, hi)",
            weights=", float[4, 1, 1] lo, float[4, 1, 1] hi",
        ),
        groups=1,
        prunable={"lo:0": 4, "hi:0": 4, "w2:1": 4},
    ),
    Case(
        "sum-mean-three-inputs",
        between_convs(
            "[sum] s = Sum (h, c, d)\n    [mean] n = Mean (s, h, c)",
            weights=", float[4, 1, 1] c, float[1, 8] d",
        ),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
        pinned={"d:1": ("conv1", "Conv")},  # the width axis: a conv maps no spatial axis
    ),
    Case(
        "where-per-channel-condition",
        between_convs(
            "[gt] k = Greater (h, c)\n    [where] n = Where (k, h, z)", weights=", float[4, 1, 1] c, float z"
        ),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
    ),
    Case(
        "prelu-per-channel-slope",
        between_convs("[prelu] n = PRelu (h, slope)", weights=", float[4, 1, 1] slope"),
        groups=1,
        prunable={"slope:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=shapes(slope=[2, 1, 1]),
    ),
    Case(
        "mod-integer-per-channel",
        between_convs(
            "[int] i = Cast <to = 6> (h)\n    [mod] m = Mod (i, md)\n    [float] n = Cast <to = 1> (m)",
            weights=", int32[4, 1, 1] md = {2, 3, 5, 7}",
        ),
        groups=1,
        prunable={"md:0": 4, "w2:1": 4},
        check=shapes(md=[2, 1, 1]),
    ),
    Case(
        "mod-float",
        between_convs("[mod] n = Mod <fmod = 1> (h, c)", weights=", float[4, 1, 1] c"),
        positive=("c",),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
    ),
    Case(
        "comparisons-and-logic",
        between_convs(
            """[gt] a = Greater (h, c)
    [le] b = LessOrEqual (h, d)
    [lt] e = Less (h, c)
    [ge] f = GreaterOrEqual (h, d)
    [xor] g = Xor (a, b)
    [and] k = And (e, f)
    [or] o = Or (g, k)
    [or2] q = Or (o, mask)
    [float] n = Cast <to = 1> (q)""",
            weights=", float[4, 1, 1] c, float[4, 1, 1] d, bool[4, 1, 1] mask",
        ),
        groups=1,
        prunable={"c:0": 4, "d:0": 4, "mask:0": 4, "w2:1": 4},
    ),
    Case(
        "equal-integer",
        between_convs(
            "[int] i = Cast <to = 6> (h)\n    [eq] e = Equal (i, k)\n    [float] n = Cast <to = 1> (e)",
            weights=", int32[4, 1, 1] k = {0, 1, -1, 2}",
        ),
        groups=1,
        prunable={"k:0": 4, "w2:1": 4},
    ),
    Case(
        "bitshift",
        between_convs(
            """[abs] a = Abs (h)
    [uint] u = Cast <to = 12> (a)
    [shift] s = BitShift <direction = "LEFT"> (u, by)
    [float] n = Cast <to = 1> (s)""",
            weights=", uint32[4, 1, 1] by = {0, 1, 2, 3}",
        ),
        groups=1,
        prunable={"by:0": 4, "w2:1": 4},
    ),
    Case(
        "add-per-channel-dynamic-batch",
        between_convs("[add] n = Add (h, c)", weights=", float[4, 1, 1] c", x="N, 3, 8, 8", y="N, 2, 8, 8"),
        groups=1,
        prunable={"c:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
    ),
    # -- broadcasting activations against each other
    Case(
        "residual-add-of-two-convs",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[4, 3, 3, 3] wa, float[4, 3, 1, 1] wb, float[4] bb, float[2, 4, 1, 1] w3> {
        [conv_a] a = Conv <pads = [1, 1, 1, 1]> (x, wa)
        [conv_b] b = Conv (x, wb, bb)
        [add] s = Add (a, b)
        [act] r = Relu (s)
        [conv3] y = Conv (r, w3)
    }""",
        groups=1,
        prunable={"wa:0": 4, "wb:0": 4, "bb:0": 4, "w3:1": 4},
        ratios=(0.5, 0.3),
        check=one_group_holds("wa:0", "wb:0", "w3:1"),
    ),
    Case(
        "residual-block",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[4, 3, 3, 3] w1, float[4, 4, 3, 3] wa, float[4] ba, float[2, 4, 1, 1] w3> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [conv_a] a = Conv <pads = [1, 1, 1, 1]> (h, wa, ba)
        [add] s = Add (h, a)
        [conv3] y = Conv (s, w3)
    }""",
        groups=1,
        prunable={"w1:0": 4, "wa:0": 4, "wa:1": 4, "w3:1": 4},
        check=one_group_holds("w1:0", "wa:0", "wa:1"),
    ),
    Case(
        # squeeze-excitation: a per-channel gate computed from the channels themselves
        "squeeze-excitation",
        between_convs(
            """[gap] g = GlobalAveragePool (h)
    [reduce] r = Conv (g, wr, br)
    [relu] a = Relu (r)
    [expand] e = Conv (a, we, be)
    [gate] s = HardSigmoid (e)
    [scale] n = Mul (h, s)""",
            weights=", float[2, 4, 1, 1] wr, float[2] br, float[4, 2, 1, 1] we, float[4] be",
        ),
        groups=2,
        prunable={"w1:0": 4, "wr:1": 4, "we:0": 4, "be:0": 4, "w2:1": 4, "wr:0": 2, "we:1": 2},
        check=one_group_holds("w1:0", "wr:1", "we:0", "w2:1"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
