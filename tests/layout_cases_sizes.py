"""Rule cases of layout ops that keep the channel count while the axis is tracked through them
(Gather, Pad, Resize, Upsample, Expand, tokens flattened and put back); run by test_rules_layout.py."""

from __future__ import annotations

from tests.rule_cases import Case, Check, between_convs, const_is, no_rewrites, shapes, slice_of, then


def keeps_positions(key: str, *positions: int) -> Check:
    """The plan's slice of `key` keeps `positions` (of the original axis)."""

    def check(analysis, result, model):
        kept = slice_of(result, key).keep
        assert set(positions) <= set(kept), f"{key} keeps {kept}, not all of {positions}"

    return check


SIZE_CASES = [
    # -- Gather
    Case(
        "gather-rows",
        between_convs(
            "[gather] n = Gather <axis = 2> (h, rows)", weights=", int64[3] rows = {0, 2, 5}", y="1, 2, 3, 8"
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "gather-one-column",
        between_convs(
            "[gather] n = Gather <axis = 3> (h, col)",
            weights=", int64 col = {1}",
            y="1, 2, 8",
            w2="float[2, 4, 1] w2",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        # picking channels: the source channels stay, the picked ones go with their index
        "gather-channels",
        between_convs(
            "[gather] n = Gather <axis = 1> (h, picks)",
            weights=", int64[2] picks = {0, 3}",
            w2="float[2, 2, 1, 1] w2",
        ),
        groups=1,
        prunable={"picks:0": 2, "w2:1": 2},
        pinned={"w1:0": ("gather", "Gather")},
        check=shapes(picks=[1]),
    ),
    # -- Pad
    Case(
        "pad-spatial-constant",
        between_convs(
            "[pad] n = Pad (h, pads)", weights=", int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}", y="1, 2, 10, 10"
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
    ),
    Case(
        "pad-spatial-reflect",
        between_convs(
            '[pad] n = Pad <mode = "reflect"> (h, pads)',
            weights=", int64[8] pads = {0, 0, 2, 1, 0, 0, 1, 2}",
            y="1, 2, 11, 11",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "pad-axes-input-opset-18",
        between_convs(
            "[pad] n = Pad (h, pads, value, axes)",
            weights=", int64[4] pads = {1, 1, 1, 1}, float value = {0.5}, int64[2] axes = {2, 3}",
            y="1, 2, 10, 10",
        ),
        opset=18,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "pad-attribute-opset-9",
        between_convs("[pad] n = Pad <pads = [0, 0, 1, 1, 0, 0, 1, 1]> (h)", y="1, 2, 10, 10"),
        opset=9,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        # an offset map: channel i of h is channel 1 + i of n; the added channels stay
        "pad-channels",
        between_convs(
            "[pad] n = Pad (h, pads)",
            weights=", int64[8] pads = {0, 1, 0, 0, 0, 1, 0, 0}",
            w2="float[2, 6, 1, 1] w2",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=then(
            no_rewrites,
            shapes(w1=[2, 3, 3, 3], w2=[2, 4, 1, 1]),
            const_is("pad", 1, [0, 1, 0, 0, 0, 1, 0, 0]),
        ),
    ),
    Case(
        # the widened identity path of a BlazeFace block: x (4 channels) + 2 zero channels is
        # added to a conv branch of 6; x's channels prune through the Pad, the branch's last two
        # filters sit on the constant channels and stay
        "pad-channels-residual",
        """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
        <float[4, 3, 3, 3] w1, float[6, 4, 3, 3] wb, float[2, 6, 1, 1] w2,
         int64[8] pads = {0, 0, 0, 0, 0, 2, 0, 0}> {
        [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        [branch] c = Conv <pads = [1, 1, 1, 1]> (h, wb)
        [pad] p = Pad (h, pads)
        [add] s = Add (c, p)
        [conv2] y = Conv (s, w2)
    }""",
        groups=1,
        prunable={"w1:0": 4, "wb:1": 4, "wb:0": 4, "w2:1": 4},
        check=then(shapes(w1=[2, 3, 3, 3], wb=[4, 2, 3, 3], w2=[2, 4, 1, 1]), keeps_positions("wb:0", 4, 5)),
    ),
    Case(
        "pad-channels-reflect",
        between_convs(
            '[pad] n = Pad <mode = "reflect"> (h, pads)',
            weights=", int64[8] pads = {0, 1, 0, 0, 0, 1, 0, 0}",
            w2="float[2, 6, 1, 1] w2",
        ),
        groups=0,
        pinned={"w1:0": ("pad", "Pad"), "w2:1": ("pad", "Pad")},
    ),
    Case(
        "pad-channels-crop",
        between_convs(
            "[pad] n = Pad (h, pads)",
            weights=", int64[8] pads = {0, -1, 0, 0, 0, 0, 0, 0}",
            w2="float[2, 3, 1, 1] w2",
        ),
        groups=0,
        pinned={"w1:0": ("pad", "Pad"), "w2:1": ("pad", "Pad")},
    ),
    # -- ConstantOfShape, and Expand of a one-value constant: every position holds the same value
    Case(
        "constant-of-shape-literal",
        between_convs(
            "[fill] z = ConstantOfShape <value = float[1] {0.5}> (dims)\n    [add] n = Add (h, z)",
            weights=", int64[4] dims = {1, 4, 8, 8}",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("fill", "fill shape"),),
        check=const_is("fill", 0, [1, 2, 8, 8]),
    ),
    Case(
        "expand-one-value-constant",
        between_convs(
            "[fill] z = Expand (c, dims)\n    [add] n = Add (h, z)",
            weights=", float[1] c = {0.25}, int64[4] dims = {1, 4, 8, 8}",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("fill", "expand shape"),),
        check=const_is("fill", 1, [1, 2, 8, 8]),
    ),
    Case(
        # a constant of two values: only one-value fills free their broadcast axes (conservative)
        "expand-two-value-constant",
        between_convs(
            "[fill] z = Expand (c, dims)\n    [add] n = Add (h, z)",
            weights=", float[1, 1, 1, 2] c = {0.25, 0.5}, int64[4] dims = {1, 4, 8, 2}",
            x="1, 3, 8, 2",
            y="1, 2, 8, 2",
        ),
        groups=0,
        pinned={"w1:0": ("fill", "Expand"), "w2:1": ("fill", "Expand")},
    ),
    # -- Resize and Upsample
    Case(
        "resize-scales",
        between_convs(
            '[resize] n = Resize <mode = "nearest"> (h, roi, scales)',
            weights=", float[0] roi = {}, float[4] scales = {1.0, 1.0, 2.0, 2.0}",
            y="1, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=then(no_rewrites, const_is("resize", 2, [1.0, 1.0, 2.0, 2.0])),
    ),
    Case(
        "resize-scales-opset-10",
        between_convs(
            '[resize] n = Resize <mode = "nearest"> (h, scales)',
            weights=", float[4] scales = {1.0, 1.0, 2.0, 2.0}",
            y="1, 2, 16, 16",
        ),
        opset=10,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "resize-sizes",
        between_convs(
            '[resize] n = Resize <mode = "linear"> (h, , , sizes)',
            weights=", int64[4] sizes = {1, 4, 16, 16}",
            y="1, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("resize", "sizes"),),
        ratios=(0.5, 0.3),
        check=const_is("resize", 3, [1, 2, 16, 16]),
    ),
    Case(
        "resize-sizes-dynamic-batch",
        between_convs(
            '[resize] n = Resize <mode = "nearest"> (h, , , sizes)',
            weights=", int64[4] sizes = {1, 4, 16, 16}",
            x="N, 3, 8, 8",
            y="N, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=const_is("resize", 3, [1, 2, 16, 16]),
    ),
    Case(
        # torch's interpolate(size=...): sizes = Concat(Shape(h)[:2], [16, 16]); the channel entry
        # copies h's own channel count, so it follows the pruning with nothing to rewrite
        "resize-run-time-sizes-copy-the-channels",
        between_convs(
            """[size] k = Shape (h)
    [lead] c = Slice (k, zero, two)
    [cat] z = Concat <axis = 0> (c, hw)
    [resize] n = Resize <mode = "nearest"> (h, , , z)""",
            weights=", int64[1] zero = {0}, int64[1] two = {2}, int64[2] hw = {16, 16}",
            x="N, 3, 8, 8",  # a dynamic batch keeps the Shape from folding into a constant
            y="N, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=no_rewrites,
    ),
    Case(
        # the sizes copy another tensor's channel count: the two lose channels together, or the
        # resized output would keep the old count
        "resize-run-time-sizes-copy-another-tensor",
        between_convs(
            """[conv3] g = Conv (x, w3)
    [size] k = Shape (g)
    [lead] c = Slice (k, zero, two)
    [cat] z = Concat <axis = 0> (c, hw)
    [resize] n = Resize <mode = "nearest"> (h, , , z)""",
            weights=", float[4, 3, 1, 1] w3, int64[1] zero = {0}, int64[1] two = {2}, int64[2] hw = {16, 16}",
            x="N, 3, 8, 8",
            y="N, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w3:0": 4, "w2:1": 4},
        check=no_rewrites,
    ),
    Case(
        # the channel entry is computed (here c * 1): it cannot follow the pruning, the axis stays
        "resize-run-time-sizes-computed-channels",
        between_convs(
            """[size] k = Shape (h)
    [lead] c = Slice (k, zero, two)
    [same] d = Mul (c, ones)
    [cat] z = Concat <axis = 0> (d, hw)
    [resize] n = Resize <mode = "nearest"> (h, , , z)""",
            weights=", int64[1] zero = {0}, int64[1] two = {2}, int64[2] ones = {1, 1}"
            ", int64[2] hw = {16, 16}",
            x="N, 3, 8, 8",
            y="N, 2, 16, 16",
        ),
        groups=0,
        pinned={"w1:0": None, "w2:1": None},
    ),
    Case(
        "resize-axes-spatial",
        between_convs(
            '[resize] n = Resize <mode = "nearest", axes = [2, 3]> (h, , , sizes)',
            weights=", int64[2] sizes = {16, 16}",
            y="1, 2, 16, 16",
        ),
        opset=18,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=then(no_rewrites, const_is("resize", 3, [16, 16])),
    ),
    Case(
        # `sizes` lists the axes of the `axes` attribute: entry 0 is the channel count
        "resize-axes-with-channels",
        between_convs(
            '[resize] n = Resize <mode = "nearest", axes = [1, 2, -1]> (h, , , sizes)',
            weights=", int64[3] sizes = {4, 16, 16}",
            y="1, 2, 16, 16",
        ),
        opset=18,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("resize", "sizes"),),
        check=const_is("resize", 3, [2, 16, 16]),
    ),
    Case(
        # 4 channels at scale 1.2 are 4 channels again, but resampled: the last two repeat one
        "resize-scale-not-1-keeps-channel-count",
        between_convs(
            '[resize] n = Resize <mode = "nearest"> (h, roi, scales)',
            weights=", float[0] roi = {}, float[4] scales = {1.0, 1.2, 2.0, 2.0}",
            y="1, 2, 16, 16",
        ),
        groups=0,
        pinned={"w1:0": ("resize", "Resize"), "w2:1": ("resize", "Resize")},
    ),
    Case(
        # tf_crop_and_resize interpolates across the crop box even where the size stays
        "resize-crop-box-across-channels",
        between_convs(
            '[resize] n = Resize <mode = "linear", coordinate_transformation_mode = "tf_crop_and_resize"> '
            "(h, roi, , sizes)",
            weights=", float[8] roi = {0, 0.25, 0, 0, 1, 0.75, 1, 1}, int64[4] sizes = {1, 4, 16, 16}",
            y="1, 2, 16, 16",
        ),
        groups=0,
        pinned={"w1:0": ("resize", "Resize"), "w2:1": ("resize", "Resize")},
    ),
    Case(
        "resize-crop-box-whole-channels",
        between_convs(
            '[resize] n = Resize <mode = "linear", coordinate_transformation_mode = "tf_crop_and_resize"> '
            "(h, roi, , sizes)",
            weights=", float[8] roi = {0, 0, 0.1, 0, 1, 1, 0.9, 1}, int64[4] sizes = {1, 4, 16, 16}",
            y="1, 2, 16, 16",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("resize", "sizes"),),
    ),
    Case(
        "upsample-attribute-opset-7",
        between_convs(
            '[up] n = Upsample <mode = "nearest", scales = [1.0, 1.0, 2.0, 2.0]> (h)', y="1, 2, 16, 16"
        ),
        opset=7,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "upsample-channel-scale-not-1",
        between_convs(
            '[up] n = Upsample <mode = "nearest", scales = [1.0, 1.1, 2.0, 2.0]> (h)', y="1, 2, 16, 16"
        ),
        opset=7,
        groups=0,
        pinned={"w1:0": ("up", "Upsample"), "w2:1": ("up", "Upsample")},
    ),
    Case(
        "upsample-opset-9",
        between_convs(
            '[up] n = Upsample <mode = "nearest"> (h, scales)',
            weights=", float[4] scales = {1.0, 1.0, 2.0, 2.0}",
            y="1, 2, 16, 16",
        ),
        opset=9,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        # one run-time target [batch, seq, 2, 8] serves two Reshapes (the dynamo exporter computes
        # it once for q, k and v); only v's heads are pruned, k's output stays as it is: v's
        # Reshape gets a copy of the target computation with its own constant
        "shared-run-time-target",
        """g (float[N, 4, 8] x) => (float[N, 4, 2, 8] kr, float[N, 4, 2] y)
            <float[8, 16] wk, float[8, 16] wv, float[16, 2] wo, int64[1] zero = {0}, int64[1] two = {2},
             int64[2] heads = {2, 8}, int64[3] flat = {0, 0, 16}> {
            [k] k = MatMul (x, wk)
            [v] v = MatMul (x, wv)
            [size] s = Shape (x)
            [lead] l = Slice (s, zero, two)
            [target] t = Concat <axis = 0> (l, heads)
            [split_k] kr = Reshape (k, t)
            [split_v] vr = Reshape (v, t)
            [act] r = Relu (vr)
            [merge] m = Reshape (r, flat)
            [o] y = MatMul (m, wo) }""",
        groups=1,
        prunable={"wv:1": 2, "wo:0": 2},
        pinned={"wk:1": ("<graph>", "output")},
        rewrites=(("split_v", "shape"), ("merge", "shape")),
    ),
    Case(
        # LeViT's Linear + BatchNorm1d: tokens flattened into the batch for the BatchNorm and put
        # back; the batch is dynamic, so -1 stands for 4*N one way and for N the other way
        "tokens-flattened-around-batchnorm",
        """g (float[N, 4, 6] x) => (float[N, 4, 2] y)
            <float[6, 8] w1, float[8] s, float[8] b, float[8] m, float[8] v, float[8, 2] w2,
             int64[2] flat = {-1, 8}, int64[3] back = {-1, 4, 8}> {
            [fc1] h = MatMul (x, w1)
            [flat] f = Reshape (h, flat)
            [bn] n = BatchNormalization (f, s, b, m, v)
            [back] t = Reshape (n, back)
            [act] r = Relu (t)
            [fc2] y = MatMul (r, w2) }""",
        positive=("v",),
        groups=1,
        prunable={"w1:1": 8, "s:0": 8, "w2:0": 8},
        rewrites=(("flat", "shape"), ("back", "shape")),
        check=then(const_is("flat", 1, [-1, 4]), const_is("back", 1, [-1, 4, 4])),
    ),
    Case(
        # the same with the shape put back by `reshape_as` (timm's LinearNorm): the target is the
        # Shape of the tensor before flattening, whose channel axis is pruned alike
        "tokens-put-back-with-reshape-as",
        """g (float[N, 4, 6] x) => (float[N, 4, 2] y)
            <float[6, 8] w1, float[8] s, float[8] b, float[8] m, float[8] v, float[8, 2] w2,
             int64[2] flat = {-1, 8}> {
            [fc1] h = MatMul (x, w1)
            [flat] f = Reshape (h, flat)
            [bn] n = BatchNormalization (f, s, b, m, v)
            [size] k = Shape (h)
            [back] t = Reshape (n, k)
            [act] r = Relu (t)
            [fc2] y = MatMul (r, w2) }""",
        positive=("v",),
        groups=1,
        prunable={"w1:1": 8, "s:0": 8, "w2:0": 8},
        rewrites=(("flat", "shape"),),
    ),
    Case(
        # an Expand that keeps the channel axis at full size: its target entry is rewritten
        "expand-full-channels",
        between_convs(
            "[grow] n = Expand (h, target)",
            weights=", int64[4] target = {1, 4, 8, 8}",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("grow", "expand shape"),),
        check=const_is("grow", 1, [1, 2, 8, 8]),
    ),
    Case(
        # torch's x.expand(n, -1, 8, 8) (TorchScript): Where(Equal(s, -1), ones, s) turns the -1
        # that keeps the channel count into 1; the channel axis passes, nothing to rewrite
        "expand-torch-keep-dim",
        between_convs(
            """[size] k = Shape (x)
    [lead] b = Slice (k, zero, one)
    [cat] s = Concat <axis = 0> (b, rest)
    [eq] q = Equal (s, minus)
    [keep] t = Where (q, ones, s)
    [grow] n = Expand (h, t)""",
            weights=", int64[1] zero = {0}, int64[1] one = {1}, int64[3] rest = {-1, 8, 8}"
            ", int64[4] minus = {-1, -1, -1, -1}, int64[4] ones = {1, 1, 1, 1}",
            x="N, 3, 8, 8",
            y="N, 2, 8, 8",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=no_rewrites,
    ),
    Case(
        # channels made by broadcasting a size-1 axis cannot be removed one by one
        "expand-broadcast-channels",
        between_convs(
            "[mean] m = ReduceMean <axes = [1]> (h)\n    [grow] n = Expand (m, target)",
            weights=", int64[4] target = {1, 4, 8, 8}",
        ),
        groups=0,
        pinned={"w2:1": ("grow", "Expand")},
    ),
]
