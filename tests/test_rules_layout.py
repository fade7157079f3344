"""Channel rules of layout ops: axes move (Transpose, Squeeze), merge into blocks (Flatten,
Reshape), get offsets (Concat, Split, Slice) or keep their size (Gather, Pad, Resize) while
the channel axis is tracked through them, and the shape constants that encode a channel
count are rewritten."""

from __future__ import annotations

import pytest

from tests.rule_cases import (
    Case,
    attr_is,
    between_convs,
    check_pruning,
    check_structure,
    const_is,
    ids,
    no_rewrites,
    rewrite_is,
    runnable,
    shapes,
    then,
    unit_width,
)

INT64_MAX = 9223372036854775807
DYNAMIC = {"x": "N, 3, 8, 8", "y": "N, 2, 8, 8"}


def to_matmul(features: int, y: str = "1, 2") -> dict[str, str]:
    return {"w2": f"float[{features}, 2] w2", "tail": "[fc] y = MatMul (n, w2)", "y": y}


def split_case(case_id: str, split: str, opset: int, sizes: list[int], after: list[int], check=None) -> Case:
    """h -> Split into two along channels -> the parts swap places in a Concat -> conv2."""
    return Case(
        case_id,
        between_convs(
            f"[split] a, b = {split}\n    [act] r = Relu (b)\n    [cat] n = Concat <axis = 1> (r, a)",
            weights=", int64[2] sizes = {" + ", ".join(map(str, sizes)) + "}",
            channels=sum(sizes),
        ),
        opset=opset,
        groups=sum(size > 1 for size in sizes),
        prunable={"w1:0": sizes[0], "w2:1": sizes[1]},
        rewrites=(("split", "split"),),
        check=then(rewrite_is("split", "split", sizes, after), *([check] if check else [])),
    )


CASES = [
    # -- axes move
    Case(
        "transpose-to-channels-last",
        between_convs("[nhwc] n = Transpose <perm = [0, 2, 3, 1]> (h)", **to_matmul(4, "1, 8, 8, 2")),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        pinned={"w2:1": ("<graph>", "output")},
    ),
    Case(
        "transpose-default-perm-twice",
        between_convs("[rev] t = Transpose (h)\n    [back] n = Transpose (t)"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "squeeze-axes-input",
        between_convs(
            "[gap] g = GlobalAveragePool (h)\n    [squeeze] n = Squeeze (g, axes)",
            weights=", int64[2] axes = {2, 3}",
            y="1, 2",
            w2="float[2, 4] w2",
            tail="[fc] y = Gemm <transB = 1> (n, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "squeeze-all-ones-then-unsqueeze",
        between_convs(
            """[gap] g = GlobalAveragePool (h)
    [squeeze] q = Squeeze (g)
    [unsqueeze] n = Unsqueeze (q, axes)""",
            weights=", int64[1] axes = {0}",
            y="1, 2",
            w2="float[2, 4] w2",
            tail="[fc] y = Gemm <transB = 1> (n, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "unsqueeze-axes-attribute-opset-11",
        between_convs(
            """[mean] g = ReduceMean <axes = [2, 3], keepdims = 0> (h)
    [unsqueeze] n = Unsqueeze <axes = [2, 3]> (g)""",
            y="1, 2, 1, 1",
        ),
        opset=11,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    # -- axes merge: a channel becomes a block of H*W features
    Case(
        "flatten-then-gemm",
        between_convs(
            "[flat] n = Flatten (h)",
            y="1, 2",
            w2="float[2, 256] w2",
            tail="[fc] y = Gemm <transB = 1> (n, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        ratios=(0.5, 0.3),
        check=then(unit_width("w2:1", 64), shapes(w2=[2, 128])),
    ),
    Case(
        "flatten-dynamic-batch",
        between_convs(
            "[flat] n = Flatten (h)",
            x="N, 3, 8, 8",
            y="N, 2",
            w2="float[2, 256] w2",
            tail="[fc] y = Gemm <transB = 1> (n, w2)",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
    ),
    Case(
        "reshape-static-target",
        between_convs(
            "[flat] n = Reshape (h, shape)", weights=", int64[2] shape = {1, 256}", **to_matmul(256)
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        rewrites=(("flat", "shape"),),
        ratios=(0.5, 0.3),
        check=then(
            unit_width("w2:0", 64),
            rewrite_is("flat", "shape", [1, 256], [1, 128]),
            const_is("flat", 1, [1, 128]),
        ),
    ),
    Case(
        "reshape-minus-one-stays",
        between_convs(
            "[flat] n = Reshape (h, shape)", weights=", int64[2] shape = {1, -1}", **to_matmul(256)
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        check=then(no_rewrites, const_is("flat", 1, [1, -1])),
    ),
    Case(
        "reshape-dynamic-batch-minus-one",
        between_convs(
            "[flat] n = Reshape (h, shape)",
            weights=", int64[2] shape = {-1, 256}",
            x="N, 3, 8, 8",
            **to_matmul(256, "N, 2"),
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        rewrites=(("flat", "shape"),),
        check=const_is("flat", 1, [-1, 128]),
    ),
    Case(
        "reshape-dynamic-batch-copy-zero",
        between_convs(
            "[flat] n = Reshape (h, shape)",
            weights=", int64[2] shape = {0, -1}",
            x="N, 3, 8, 8",
            **to_matmul(256, "N, 2"),
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        check=then(no_rewrites, const_is("flat", 1, [0, -1])),
    ),
    Case(
        # heads: channels split into 2 blocks of 2, activated, merged back
        "reshape-split-and-merge-heads",
        between_convs(
            "[heads] a = Reshape (h, split)\n    [act] r = Relu (a)\n    [merge] n = Reshape (r, merged)",
            weights=", int64[5] split = {1, 2, 2, 8, 8}, int64[4] merged = {1, 4, 8, 8}",
        ),
        groups=1,
        prunable={"w1:0": 2, "w2:1": 2},
        rewrites=(("heads", "shape"), ("merge", "shape")),
        check=then(
            unit_width("w1:0", 2), const_is("heads", 1, [1, 1, 2, 8, 8]), const_is("merge", 1, [1, 2, 8, 8])
        ),
    ),
    Case(
        # channel shuffle: [g, c] -> [c, g]; a unit is one local index c, in every group
        "reshape-channel-shuffle",
        between_convs(
            """[split_groups] a = Reshape (h, grouped)
    [swap] b = Transpose <perm = [0, 2, 1, 3, 4]> (a)
    [merge] n = Reshape (b, merged)""",
            weights=", int64[5] grouped = {1, 2, 4, 8, 8}, int64[4] merged = {1, 8, 8, 8}",
            channels=8,
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        rewrites=(("split_groups", "shape"), ("merge", "shape")),
        ratios=(0.5, 0.3),
        check=then(
            unit_width("w1:0", 2),
            const_is("split_groups", 1, [1, 2, 2, 8, 8]),
            const_is("merge", 1, [1, 4, 8, 8]),
        ),
    ),
    Case(
        # Keras-style flatten of (h, w, c): a channel is every 4th feature
        "reshape-channels-last-flatten",
        between_convs(
            "[nhwc] t = Transpose <perm = [0, 2, 3, 1]> (h)\n    [flat] n = Reshape (t, shape)",
            weights=", int64[2] shape = {1, 256}",
            **to_matmul(256),
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:0": 4},
        rewrites=(("flat", "shape"),),
        check=then(unit_width("w2:0", 64), const_is("flat", 1, [1, 128])),
    ),
    Case(
        "reshape-shared-target",
        between_convs(
            """[flat_a] a = Reshape (h, shape)
    [side] k = Conv <pads = [1, 1, 1, 1]> (x, w3)
    [flat_b] b = Reshape (k, shape)
    [cat] n = Concat <axis = 1> (a, b)""",
            weights=", int64[2] shape = {1, 256}, float[4, 3, 3, 3] w3",
            **to_matmul(512),
        ),
        groups=2,
        prunable={"w1:0": 4, "w3:0": 4, "w2:0": 4},
        rewrites=(("flat_a", "shape"), ("flat_b", "shape")),
        check=then(const_is("flat_a", 1, [1, 128]), const_is("flat_b", 1, [1, 128])),
    ),
    # -- axes joined at offsets
    Case(
        "concat-two-branches",
        between_convs(
            "[side] k = Conv (x, w3)\n    [cat] n = Concat <axis = 1> (h, k)",
            weights=", float[6, 3, 1, 1] w3",
            w2="float[2, 10, 1, 1] w2",
        ),
        groups=2,
        prunable={"w1:0": 4, "w3:0": 6, "w2:1": 6},
        ratios=(0.5, 0.3),
        check=shapes(w2=[2, 5, 1, 1]),
    ),
    Case(
        # joined along the height, the two convs' channels are the same channels
        "concat-along-height-couples",
        between_convs(
            "[side] k = Conv <pads = [1, 1, 1, 1]> (x, w3)\n    [cat] n = Concat <axis = 2> (h, k)",
            weights=", float[4, 3, 3, 3] w3",
            y="1, 2, 16, 8",
        ),
        groups=1,
        prunable={"w1:0": 4, "w3:0": 4, "w2:1": 4},
    ),
    Case(
        "concat-same-tensor-twice",
        between_convs("[cat] n = Concat <axis = 1> (h, h)", w2="float[2, 8, 1, 1] w2"),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=unit_width("w2:1", 2),
    ),
    split_case("split-sizes-input", "Split <axis = 1> (h, sizes)", 17, [1, 3], [1, 2]),
    split_case(
        "split-sizes-attribute-opset-11",
        "Split <axis = 1, split = [2, 2]> (h)",
        11,
        [2, 2],
        [1, 1],
        check=attr_is("split", "split", [1, 1]),
    ),
    Case(
        "split-num-outputs-opset-18",
        between_convs(
            """[split] a, b, c = Split <axis = 1, num_outputs = 3> (h)
    [cat] n = Concat <axis = 1> (c, b, a)""",
            channels=8,
        ),
        opset=18,
        groups=3,
        prunable={"w1:0": 3, "w2:1": 2},
        rewrites=(("split", "split"),),
        check=then(
            rewrite_is("split", "split", [3, 3, 2], [2, 2, 1]),
            attr_is("split", "num_outputs", None),
            const_is("split", 1, [2, 2, 1]),
        ),
    ),
    Case(
        # opset 13 to 17 without sizes: equal parts; the rewrite adds the sizes input
        "split-equal-parts-opset-13",
        between_convs("[split] a, b = Split <axis = 1> (h)\n    [cat] n = Concat <axis = 1> (b, a)"),
        opset=13,
        groups=2,
        prunable={"w1:0": 2, "w2:1": 2},
        rewrites=(("split", "split"),),
        check=const_is("split", 1, [1, 1]),
    ),
    Case(
        "split-shared-sizes",
        between_convs(
            """[split] a, b = Split <axis = 1> (h, sizes)
    [side] k = Conv (x, w3)
    [split2] c, d = Split <axis = 1> (k, sizes)
    [mul] m = Mul (a, c)
    [add] q = Add (b, d)
    [cat] n = Concat <axis = 1> (m, q)""",
            weights=", int64[2] sizes = {2, 2}, float[4, 3, 1, 1] w3",
        ),
        groups=2,
        prunable={"w1:0": 2, "w3:0": 2},
        rewrites=(("split", "split"), ("split2", "split")),
        check=then(const_is("split", 1, [1, 1]), const_is("split2", 1, [1, 1])),
    ),
    Case(
        # channels 0 and 3 are read by nobody: they form their own group
        "slice-channels",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes)",
            weights=", int64[1] starts = {1}, int64[1] ends = {3}, int64[1] axes = {1}",
            w2="float[2, 2, 1, 1] w2",
        ),
        groups=2,
        prunable={"w2:1": 2},
        rewrites=(("slice", "starts/ends"),),
        check=then(const_is("slice", 1, [1]), const_is("slice", 2, [2])),
    ),
    Case(
        # the bounds are shared with a Slice of the graph input, which keeps its own
        "slice-channels-shared-bounds",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes)\n    [other] q = Slice (x, starts, ends, axes)",
            weights=", int64[1] starts = {1}, int64[1] ends = {3}, int64[1] axes = {1}",
            w2="float[2, 2, 1, 1] w2",
            outputs=", float[1, 2, 8, 8] q",
        ),
        groups=2,
        prunable={"w2:1": 2},
        rewrites=(("slice", "starts/ends"),),
        check=then(const_is("slice", 2, [2]), const_is("other", 1, [1]), const_is("other", 2, [3])),
    ),
    Case(
        "slice-channels-negative-start-open-end",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes)",
            weights=", int64[1] starts = {-7}, int64[1] ends = {" + str(INT64_MAX) + "}, int64[1] axes = {1}",
            channels=8,
            w2="float[2, 7, 1, 1] w2",
        ),
        groups=1,
        prunable={"w2:1": 7},
        rewrites=(("slice", "starts/ends"),),
        ratios=(0.3, 0.5),
        check=then(const_is("slice", 1, [1]), const_is("slice", 2, [6])),
    ),
    Case(
        "slice-channels-attributes-opset-9",
        between_convs(
            "[slice] n = Slice <starts = [1], ends = [3], axes = [1]> (h)", w2="float[2, 2, 1, 1] w2"
        ),
        opset=9,
        groups=2,
        prunable={"w2:1": 2},
        rewrites=(("slice", "starts/ends"),),
        check=then(attr_is("slice", "starts", [1]), attr_is("slice", "ends", [2])),
    ),
    Case(
        "slice-channels-and-width",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes)",
            weights=", int64[2] starts = {1, 2}, int64[2] ends = {3, 6}, int64[2] axes = {1, -1}",
            w2="float[2, 2, 1, 1] w2",
            y="1, 2, 8, 4",
        ),
        groups=2,
        prunable={"w2:1": 2},
        check=then(const_is("slice", 1, [1, 2]), const_is("slice", 2, [2, 6])),
    ),
    Case(
        "slice-width-only",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes)",
            weights=", int64[1] starts = {2}, int64[1] ends = {6}, int64[1] axes = {3}",
            y="1, 2, 8, 4",
        ),
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        check=no_rewrites,
    ),
    Case(
        "slice-channels-step-2",
        between_convs(
            "[slice] n = Slice (h, starts, ends, axes, steps)",
            weights=", int64[1] starts = {0}, int64[1] ends = {4}, int64[1] axes = {1}, int64[1] steps = {2}",
            w2="float[2, 2, 1, 1] w2",
        ),
        groups=0,
        pinned={"w1:0": ("slice", "Slice"), "w2:1": ("slice", "Slice")},
    ),
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
        "pad-channels",
        between_convs(
            "[pad] n = Pad (h, pads)",
            weights=", int64[8] pads = {0, 1, 0, 0, 0, 1, 0, 0}",
            w2="float[2, 6, 1, 1] w2",
        ),
        groups=0,
        pinned={"w1:0": ("pad", "Pad"), "w2:1": ("pad", "Pad")},
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


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
