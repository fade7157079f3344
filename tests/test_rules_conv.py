"""Channel rules of Conv and ConvTranspose (plain, depthwise, grouped), and the graph-level
facts every rule relies on: graph inputs and outputs pin, shared weights couple, --exclude
pins, an op without a rule pins everything it touches."""

from __future__ import annotations

import pytest

from tests.rule_cases import (
    Case,
    attr,
    between_convs,
    check_pruning,
    check_structure,
    groups_with,
    ids,
    runnable,
    then,
    weight_shape,
)

GRAPH_IN = ("<graph>", "input")
GRAPH_OUT = ("<graph>", "output")

PLAIN = """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <float[4, 3, 3, 3] w1, float[4] b1, float[2, 4, 1, 1] w2> {
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    [act] r = Relu (h)
    [conv2] y = Conv (r, w2)
}"""


def depthwise(multiplier: int) -> str:
    cout = 4 * multiplier
    return f"""g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <float[4, 3, 3, 3] w1, float[{cout}, 1, 3, 3] wd, float[{cout}] bd, float[2, {cout}, 1, 1] w2> {{
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
    [dw] d = Conv <pads = [1, 1, 1, 1], group = 4> (h, wd, bd)
    [conv2] y = Conv (d, w2)
}}"""


def grouped(group: int) -> str:
    return f"""g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <float[8, 3, 3, 3] w1, float[8, {8 // group}, 3, 3] wg, float[8] bg, float[2, 8, 1, 1] w2> {{
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
    [gc] d = Conv <pads = [1, 1, 1, 1], group = {group}> (h, wg, bg)
    [conv2] y = Conv (d, w2)
}}"""


def conv_transpose(group: int, wt: str, bias: int) -> str:
    return f"""g (float[1, 3, 8, 8] x) => (float[1, 2, 16, 16] y)
    <float[4, 3, 3, 3] w1, float[{wt}] wt, float[{bias}] bt, float[2, {bias}, 1, 1] w2> {{
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
    [up] d = ConvTranspose <strides = [2, 2], group = {group}> (h, wt, bt)
    [conv2] y = Conv (d, w2)
}}"""


def group_is(node: str, value: int, weight: str, shape: list[int], rewritten_from: int | None = None):
    """The pruned node has `group = value` and weight `shape`; the plan records the rewrite."""

    def check(analysis, result, model):
        assert attr(result.model, node, "group") == value
        assert weight_shape(result.model, weight) == shape
        records = [(r.what, r.before, r.after) for r in result.plan.rewrites if r.node == node]
        expected = [] if rewritten_from is None else [("group", rewritten_from, value)]
        assert records == expected, result.plan.rewrites

    return check


def shared_weight_stays_shared(analysis, result, model):
    readers = [n.name for n in result.model.graph.node if "ws" in n.input]
    assert readers == ["ca", "cb"], readers
    assert [t.name for t in result.model.graph.initializer].count("ws") == 1
    assert weight_shape(result.model, "ws") == [3, 2, 1, 1]


def square_shared_weight_coupled(analysis, result, model):
    (group,) = groups_with(analysis, "ws:0")
    assert any(m.key == "ws:1" for m in group.members), "ws:0 and ws:1 must be one group"
    assert weight_shape(result.model, "ws") == [2, 2, 1, 1]


def excluded_reason(analysis, result, model):
    (group,) = groups_with(analysis, "w1:0")
    assert any("excluded by --exclude" in b.reason for b in group.barriers), group.barriers


CASES = [
    # -- Conv, group 1
    Case(
        "conv-plain",
        PLAIN,
        groups=1,
        prunable={"w1:0": 4, "b1:0": 4, "w2:1": 4},
        pinned={"w1:1": GRAPH_IN},
        ratios=(0.5, 0.3),
    ),
    Case(
        # conv2 feeds the graph output: its filters stay, its input channels are pruned
        "conv-feeding-graph-output",
        PLAIN,
        groups=1,
        prunable={"w2:1": 4},
        pinned={"w2:0": GRAPH_OUT},
    ),
    Case(
        "conv-dynamic-batch",
        PLAIN.replace("float[1, 3, 8, 8] x", "float[N, 3, 8, 8] x").replace(
            "[1, 2, 8, 8] y", "[N, 2, 8, 8] y"
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT},
        ratios=(0.5, 0.3),
    ),
    Case(
        "conv-1d",
        """g (float[1, 3, 16] x) => (float[1, 2, 16] y)
        <float[6, 3, 3] w1, float[6] b1, float[2, 6, 1] w2> {
        [conv1] h = Conv <pads = [1, 1]> (x, w1, b1)
        [conv2] y = Conv (h, w2)
    }""",
        groups=1,
        prunable={"w1:0": 6, "b1:0": 6, "w2:1": 6},
        ratios=(0.5, 0.3),
    ),
    Case(
        "conv-intermediate-graph-output",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y, float[1, 4, 8, 8] h)
        <float[4, 3, 3, 3] w1, float[2, 4, 1, 1] w2> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [conv2] y = Conv (h, w2)
    }""",
        groups=0,
        pinned={"w1:0": GRAPH_OUT, "w2:1": GRAPH_OUT},
    ),
    Case(
        "conv-weight-computed-at-run-time",
        """g (float[1, 3, 8, 8] x, float[2, 4, 1, 1] wr) => (float[1, 2, 8, 8] y) <float[4, 3, 3, 3] w1> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [conv2] y = Conv (h, wr)
    }""",
        groups=0,
        pinned={"w1:0": ("conv2", "Conv")},
    ),
    # -- depthwise: one group per input channel, the group count follows the kept channels
    Case(
        "depthwise-multiplier-1",
        depthwise(1),
        groups=1,
        prunable={"w1:0": 4, "wd:0": 4, "bd:0": 4, "w2:1": 4},
        rewrites=(("dw", "group"),),
        ratios=(0.5, 0.3),
        check=group_is("dw", 2, "wd", [2, 1, 3, 3], rewritten_from=4),
    ),
    Case(
        "depthwise-multiplier-2",
        depthwise(2),
        groups=1,
        prunable={"w1:0": 4, "wd:0": 4, "bd:0": 4, "w2:1": 4},
        rewrites=(("dw", "group"),),
        ratios=(0.5, 0.3),
        check=group_is("dw", 2, "wd", [4, 1, 3, 3], rewritten_from=4),
    ),
    Case(
        "depthwise-after-concat",
        between_convs(
            """[side] k = Conv (x, w3)
    [cat] c = Concat <axis = 1> (h, k)
    [dw] n = Conv <group = 10, pads = [1, 1, 1, 1]> (c, wd)""",
            weights=", float[6, 3, 1, 1] w3, float[10, 1, 3, 3] wd",
            w2="float[2, 10, 1, 1] w2",
        ),
        groups=2,
        prunable={"w1:0": 4, "w3:0": 6, "wd:0": 6, "w2:1": 4},
        rewrites=(("dw", "group"),),
        check=group_is("dw", 5, "wd", [5, 1, 3, 3], rewritten_from=10),
    ),
    # -- grouped: the same local index is removed from every group, the group count stays
    Case(
        "grouped-2",
        grouped(2),
        groups=2,
        prunable={"w1:0": 4, "wg:1": 4, "wg:0": 4, "bg:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=group_is("gc", 2, "wg", [4, 2, 3, 3]),
    ),
    Case(
        "grouped-4",
        grouped(4),
        groups=2,
        prunable={"w1:0": 2, "wg:1": 2, "wg:0": 2, "w2:1": 2},
        check=group_is("gc", 4, "wg", [4, 1, 3, 3]),
    ),
    Case(
        "grouped-after-concat",
        between_convs(
            """[side] k = Conv (x, w3)
    [cat] c = Concat <axis = 1> (h, k)
    [gc] n = Conv <group = 2> (c, wg)""",
            weights=", float[4, 3, 1, 1] w3, float[4, 4, 1, 1] wg",
        ),
        groups=2,
        prunable={"w1:0": 4, "w3:0": 4, "wg:1": 4, "wg:0": 2, "w2:1": 2},
        check=group_is("gc", 2, "wg", [2, 2, 1, 1]),
    ),
    Case(
        # ResNeXt-like: the local output index of a 2-group conv meets the local input index of
        # a 4-group conv: channel c is c % 4 for one and c % 2 for the other, so units of 4
        "grouped-2-then-grouped-4",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[8, 3, 1, 1] w1, float[8, 4, 3, 3] g1, float[8, 2, 3, 3] g2, float[2, 8, 1, 1] w3> {
        [conv1] h = Conv (x, w1)
        [ga] a = Conv <group = 2, pads = [1, 1, 1, 1]> (h, g1)
        [gb] b = Conv <group = 4, pads = [1, 1, 1, 1]> (a, g2)
        [conv3] y = Conv (b, w3)
    }""",
        groups=3,
        prunable={"w1:0": 4, "g1:1": 4, "g1:0": 2, "g2:1": 2, "g2:0": 2, "w3:1": 2},
        check=then(group_is("ga", 2, "g1", [4, 2, 3, 3]), group_is("gb", 4, "g2", [4, 1, 3, 3])),
    ),
    # -- ConvTranspose: W is [C_in, C_out / group, k, k]
    Case(
        "conv-transpose-plain",
        conv_transpose(1, "4, 6, 2, 2", 6),
        groups=2,
        prunable={"w1:0": 4, "wt:0": 4, "wt:1": 6, "bt:0": 6, "w2:1": 6},
        ratios=(0.5, 0.3),
    ),
    Case(
        "conv-transpose-grouped-2",
        conv_transpose(2, "4, 3, 2, 2", 6),
        groups=2,
        prunable={"w1:0": 2, "wt:0": 2, "wt:1": 3, "bt:0": 3, "w2:1": 3},
        check=group_is("up", 2, "wt", [2, 2, 2, 2]),
    ),
    Case(
        "conv-transpose-depthwise",
        conv_transpose(4, "4, 2, 2, 2", 8),
        groups=1,
        prunable={"w1:0": 4, "wt:0": 4, "bt:0": 4, "w2:1": 4},
        rewrites=(("up", "group"),),
        check=group_is("up", 2, "wt", [2, 2, 2, 2], rewritten_from=4),
    ),
    # -- shared weights couple every place they appear
    Case(
        "shared-weight-two-convs",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[4, 3, 3, 3] w1, float[6, 4, 1, 1] ws, float[2, 12, 1, 1] w2> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [ca] a = Conv (h, ws)
        [cb] b = Conv <dilations = [2, 2]> (h, ws)
        [cat] c = Concat <axis = 1> (a, b)
        [conv2] y = Conv (c, w2)
    }""",
        groups=2,
        prunable={"w1:0": 4, "ws:1": 4, "ws:0": 6, "w2:1": 6},
        check=shared_weight_stays_shared,
    ),
    Case(
        "shared-square-weight-in-and-out",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[4, 3, 3, 3] w1, float[4, 4, 1, 1] ws, float[2, 4, 1, 1] w2> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [ca] a = Conv (h, ws)
        [cb] b = Conv (a, ws)
        [conv2] y = Conv (b, w2)
    }""",
        groups=1,
        prunable={"w1:0": 4, "ws:0": 4, "ws:1": 4, "w2:1": 4},
        check=square_shared_weight_coupled,
    ),
    # -- --exclude: channels touched by a matching node stay
    Case(
        "exclude-pins-the-node",
        PLAIN,
        groups=0,
        exclude="^conv2$",
        pinned={"w1:0": ("conv2", "Conv"), "w2:1": None},
        check=excluded_reason,
    ),
    # -- ops without a rule pin every axis they touch
    Case(
        "no-rule-einsum",
        between_convs('[es] n = Einsum <equation = "nchw->nchw"> (h)'),
        groups=0,
        pinned={"w1:0": ("es", "Einsum"), "w2:1": ("es", "Einsum")},
    ),
    Case(
        "no-rule-contrib-op",
        between_convs("[gelu] n = com.microsoft.Gelu (h)"),
        domains={"com.microsoft": 1},
        groups=0,
        pinned={"w1:0": ("gelu", "Gelu")},
    ),
    Case(
        "no-rule-custom-domain",
        between_convs("[frob] n = custom.Frob (h)"),
        domains={"custom": 1},
        groups=0,
        pinned={"w1:0": ("frob", "Frob")},
        runs=False,  # ONNX Runtime has no kernel for it
    ),
    Case(
        "exclude-matches-nothing",
        PLAIN,
        groups=1,
        exclude="^no-such-node$",
        prunable={"w1:0": 4},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
