"""Channel rules of normalizations: per-channel ones (BatchNorm, InstanceNorm) slice their
parameters with the channels; those whose statistics span the channel axis pin it."""

from __future__ import annotations

import pytest

from tests.rule_cases import (
    Case,
    between_convs,
    check_pruning,
    check_structure,
    ids,
    runnable,
    shapes,
)

LN = ("ln", "LayerNormalization")


def pinned_by(node: str, op: str) -> dict[str, tuple[str, str]]:
    """The producer's filters and the consumer's input channels are both pinned by `node`."""
    return {"w1:0": (node, op), "w2:1": (node, op)}


CASES = [
    # -- per channel
    Case(
        "batchnorm",
        between_convs(
            "[bn] n = BatchNormalization (h, s, bb, mean, var)",
            weights=", float[4] s, float[4] bb, float[4] mean, float[4] var",
        ),
        positive=("var",),
        groups=1,
        prunable={"w1:0": 4, "s:0": 4, "bb:0": 4, "mean:0": 4, "var:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=shapes(s=[2], bb=[2], mean=[2], var=[2]),
    ),
    Case(
        "batchnorm-dynamic-batch",
        between_convs(
            "[bn] n = BatchNormalization <epsilon = 0.001> (h, s, bb, mean, var)",
            weights=", float[4] s, float[4] bb, float[4] mean, float[4] var",
            x="N, 3, 8, 8",
            y="N, 2, 8, 8",
        ),
        positive=("var",),
        groups=1,
        prunable={"s:0": 4, "var:0": 4},
    ),
    Case(
        "instancenorm",
        between_convs("[in] n = InstanceNormalization (h, s, bb)", weights=", float[4] s, float[4] bb"),
        groups=1,
        prunable={"w1:0": 4, "s:0": 4, "bb:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=shapes(s=[2], bb=[2]),
    ),
    # -- LayerNormalization normalizes over [axis, rank)
    Case(
        "layernorm-over-channels",
        between_convs(
            "[ln] n = LayerNormalization <axis = 1> (h, s, bb)",
            weights=", float[4, 8, 8] s, float[4, 8, 8] bb",
        ),
        groups=0,
        pinned=pinned_by(*LN),
    ),
    Case(
        "layernorm-over-width",
        between_convs(
            "[ln] n = LayerNormalization <axis = -1> (h, s, bb)", weights=", float[8] s, float[8] bb"
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=shapes(s=[8], bb=[8]),
    ),
    Case(
        "layernorm-over-height-and-width",
        between_convs(
            "[ln] n = LayerNormalization <axis = 2> (h, s, bb)", weights=", float[8, 8] s, float[8, 8] bb"
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        # ConvNeXt: channels last, then LayerNorm over the last axis, which is the channel axis
        "layernorm-channels-last",
        between_convs(
            """[nhwc] t = Transpose <perm = [0, 2, 3, 1]> (h)
    [ln] l = LayerNormalization <axis = -1> (t, s, bb)
    [nchw] n = Transpose <perm = [0, 3, 1, 2]> (l)""",
            weights=", float[4] s, float[4] bb",
        ),
        groups=0,
        pinned={"w1:0": LN, "s:0": None},
    ),
    Case(
        "rmsnorm-over-channels",
        between_convs("[rms] n = RMSNormalization <axis = 1> (h, s)", weights=", float[4, 8, 8] s"),
        opset=23,
        groups=0,
        pinned=pinned_by("rms", "RMSNormalization"),
    ),
    Case(
        "rmsnorm-over-width",
        between_convs("[rms] n = RMSNormalization <axis = -1> (h, s)", weights=", float[8] s"),
        opset=23,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    # -- statistics across channels
    Case(
        # onnx infers no output shape for GroupNormalization-21: conv2 is pinned as a whole
        "groupnorm",
        between_convs(
            "[gn] n = GroupNormalization <num_groups = 2> (h, s, bb)", weights=", float[4] s, float[4] bb"
        ),
        opset=21,
        groups=0,
        pinned={"w1:0": ("gn", "GroupNormalization"), "w2:1": None},
    ),
    Case(
        "lpnorm-over-channels",
        between_convs("[lp] n = LpNormalization <axis = 1> (h)"),
        groups=0,
        pinned=pinned_by("lp", "LpNormalization"),
    ),
    Case(
        "lpnorm-over-width",
        between_convs("[lp] n = LpNormalization <axis = -1, p = 1> (h)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "lrn",
        between_convs("[lrn] n = LRN <size = 3> (h)"),
        groups=0,
        pinned=pinned_by("lrn", "LRN"),
    ),
    Case(
        # the default axes [0, 2, 3], one mean and variance per channel; written out because
        # onnx 1.23's checker rejects the function body of an MVN node without `axes`
        "mvn-per-channel",
        between_convs("[mvn] n = MeanVarianceNormalization <axes = [0, 2, 3]> (h)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "mvn-across-channels",
        between_convs("[mvn] n = MeanVarianceNormalization <axes = [1, 2, 3]> (h)"),
        groups=0,
        pinned=pinned_by("mvn", "MeanVarianceNormalization"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
