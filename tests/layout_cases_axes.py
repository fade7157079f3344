"""Rule cases of layout ops where the channel axis moves (Transpose, Squeeze), merges into blocks
(Flatten, Reshape) or is joined at offsets (Concat, Split, Slice); run by test_rules_layout.py."""

from __future__ import annotations

from tests.rule_cases import (
    Case,
    attr_is,
    between_convs,
    const_is,
    no_rewrites,
    rewrite_is,
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


AXES_CASES = [
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
]
