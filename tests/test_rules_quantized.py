"""Channel rules of quantized graphs: QDQ pairs (per-tensor and per-axis), dynamic quantization
(DynamicQuantizeLinear + ConvInteger / MatMulInteger), QLinearConv / QLinearMatMul, and ONNX
Runtime's com.microsoft QGemm / QLinearAdd / QLinearMul (its QOperator format).

Each case prunes and validates: mask-equivalence parity with quantized weights masked to their
zero points and removed channels zeroed at dynamic quantization (docs/quantization.md)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.parity import masked_model
from onnxprune.runtime import ort_session
from tests.rule_cases import (
    Case,
    attr_is,
    build,
    check_pruning,
    check_structure,
    ids,
    runnable,
    shapes,
    then,
)

GRAPH_IN = ("<graph>", "input")
GRAPH_OUT = ("<graph>", "output")
OPSET = 19
SCALES = ("sx", "sh", "s1", "s2", "s3", "sa", "sm", "sb1", "sy", "ws", "bs", "ys", "as")

QDQ_CONV = """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <int8[4, 3, 3, 3] w1, float[4] s1, int8[4] z1, int32[4] b1, float[4] sb1, int8[2, 4, 1, 1] w2,
     float[2] s2, int8[2] z2, float sx, uint8 zx = {128}, float sh, uint8 zh = {0}> {
    [qx] xq = QuantizeLinear (x, sx, zx)
    [dx] xd = DequantizeLinear (xq, sx, zx)
    [dw1] w1d = DequantizeLinear <axis = 0> (w1, s1, z1)
    [db1] b1d = DequantizeLinear <axis = 0> (b1, sb1)
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (xd, w1d, b1d)
    [act] r = Relu (h)
    [qh] rq = QuantizeLinear (r, sh, zh)
    [dh] rd = DequantizeLinear (rq, sh, zh)
    [dw2] w2d = DequantizeLinear <axis = 0> (w2, s2, z2)
    [conv2] y = Conv (rd, w2d)
}"""

QDQ_MATMUL = """g (float[2, 6] x) => (float[2, 3] y)
    <uint8[6, 8] w1, float[8] s1, uint8[8] z1, float[8] b1, int8[8, 3] w2, float[3] s2> {
    [dw1] w1d = DequantizeLinear <axis = 1> (w1, s1, z1)
    [fc1] h = MatMul (x, w1d)
    [bias] hb = Add (h, b1)
    [act] r = Relu (hb)
    [dw2] w2d = DequantizeLinear <axis = 1> (w2, s2)
    [fc2] y = MatMul (r, w2d)
}"""

BLOCKED = """g (float[2, 6] x) => (float[2, 3] y)
    <float[8, 6] w1, int8[8, 3] w2, float[4, 3] s2> {
    [fc1] h = Gemm <transB = 1> (x, w1)
    [dw2] w2d = DequantizeLinear <axis = 0, block_size = 2> (w2, s2)
    [fc2] y = MatMul (h, w2d)
}"""


def dynamic_conv(body: str, weights: str, channels: int = 4) -> str:
    """x -> conv1 (float, `channels` out) -> h -> dynamic quantization -> `body` writes n ->
    conv2 -> y."""
    return f"""g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <float[{channels}, 3, 3, 3] w1, float[{channels}] b1, float[2, {channels}, 1, 1] w2{weights}> {{
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    [dql] hq, hs, hz = DynamicQuantizeLinear (h)
    {body}
    [conv2] y = Conv (n, w2)
}}"""


CONV_INTEGER = dynamic_conv(
    """[ci] acc = ConvInteger (hq, wq, hz, wz)
    [cast] accf = Cast <to = 1> (acc)
    [scale] sc = Mul (hs, ws)
    [deq] n = Mul (accf, sc)""",
    ", uint8[3, 4, 1, 1] wq, uint8 wz, float ws",
).replace("float[2, 4, 1, 1] w2", "float[2, 3, 1, 1] w2")

DEPTHWISE_CONV_INTEGER = dynamic_conv(
    """[dw] acc = ConvInteger <group = 4, pads = [1, 1, 1, 1]> (hq, wq, hz, wz)
    [cast] accf = Cast <to = 1> (acc)
    [scale] sc = Mul (hs, ws)
    [deq] n = Mul (accf, sc)""",
    ", uint8[4, 1, 3, 3] wq, uint8 wz = {2}, float ws",
)

MATMUL_INTEGER = """g (float[2, 6] x) => (float[2, 3] y)
    <float[6, 8] w1, float[8] b1, uint8[8, 3] bq, uint8[3] bz, float bs> {
    [fc1] h0 = MatMul (x, w1)
    [bias] h = Add (h0, b1)
    [dql] hq, hs, hz = DynamicQuantizeLinear (h)
    [mmi] acc = MatMulInteger (hq, bq, hz, bz)
    [cast] accf = Cast <to = 1> (acc)
    [scale] sc = Mul (hs, bs)
    [deq] y = Mul (accf, sc)
}"""

QLINEAR_CONV = """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <int8[4, 3, 3, 3] w1, float[4] s1, int8[4] z1 = {0, 0, 0, 0}, int32[4] b1,
     int8[4, 1, 3, 3] wd, float[4] sd, int8[4] zd = {0, 0, 0, 0},
     int8[2, 4, 1, 1] w2, float[2] s2, int8[2] z2 = {0, 0},
     float sx, uint8 zx = {128}, float sh, uint8 zh = {3}, float sy, uint8 zy = {100}> {
    [qx] xq = QuantizeLinear (x, sx, zx)
    [conv1] h = QLinearConv <pads = [1, 1, 1, 1]> (xq, sx, zx, w1, s1, z1, sh, zh, b1)
    [dw] d = QLinearConv <group = 4, pads = [1, 1, 1, 1]> (h, sh, zh, wd, sd, zd, sh, zh)
    [conv2] yq = QLinearConv (d, sh, zh, w2, s2, z2, sy, zy)
    [dy] y = DequantizeLinear (yq, sy, zy)
}"""

QLINEAR_MATMUL = """g (float[2, 6] x) => (float[2, 3] y)
    <uint8[6, 8] bq, float[8] bs, uint8[8] bz, float[8, 3] w2, float sx, uint8 zx = {128},
     float sh, uint8 zh = {10}> {
    [qx] xq = QuantizeLinear (x, sx, zx)
    [qmm] hq = QLinearMatMul (xq, sx, zx, bq, bs, bz, sh, zh)
    [dh] h = DequantizeLinear (hq, sh, zh)
    [fc2] y = MatMul (h, w2)
}"""

MS = {"com.microsoft": 1}

QGEMM = """g (float[2, 6] x) => (float[2, 3] y)
    <float[6, 8] w1, float[8] b1, int8[3, 8] bq, float[3] bs, int8[3] bz = {1, -2, 3}, int32[3] c,
     float sh, uint8 zh = {128}, float sy, uint8 zy = {10}> {
    [fc1] h0 = MatMul (x, w1)
    [bias] h = Add (h0, b1)
    [qh] hq = QuantizeLinear (h, sh, zh)
    [qgemm] yq = com.microsoft.QGemm <transB = 1> (hq, sh, zh, bq, bs, bz, c, sy, zy)
    [dy] y = DequantizeLinear (yq, sy, zy)
}"""

QLINEAR_ADD_MUL = """g (float[1, 3, 8, 8] x) => (float[1, 2, 8, 8] y)
    <int8[4, 3, 3, 3] w1, float[4] s1, int8[4] z1 = {0, 0, 0, 0}, int8[4, 3, 1, 1] w3, float[4] s3,
     int8[4] z3 = {0, 0, 0, 0}, int8[2, 4, 1, 1] w2, float[2] s2, int8[2] z2 = {0, 0},
     float sx, uint8 zx = {128}, float sh, uint8 zh = {3}, float sa, uint8 za = {5},
     float sm, uint8 zm = {7}, float sy, uint8 zy = {100}> {
    [qx] xq = QuantizeLinear (x, sx, zx)
    [conv1] h = QLinearConv <pads = [1, 1, 1, 1]> (xq, sx, zx, w1, s1, z1, sh, zh)
    [conv3] g = QLinearConv (xq, sx, zx, w3, s3, z3, sh, zh)
    [add] a = com.microsoft.QLinearAdd (h, sh, zh, g, sh, zh, sa, za)
    [mul] m = com.microsoft.QLinearMul (a, sa, za, h, sh, zh, sm, zm)
    [conv2] yq = QLinearConv (m, sm, zm, w2, s2, z2, sy, zy)
    [dy] y = DequantizeLinear (yq, sy, zy)
}"""

CASES = [
    Case(
        "qdq-conv-per-channel",
        QDQ_CONV,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"w1:0": 4, "s1:0": 4, "z1:0": 4, "b1:0": 4, "sb1:0": 4, "w2:1": 4},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT, "s2:0": GRAPH_OUT, "z2:0": GRAPH_OUT},
        check=shapes(w1=[2, 3, 3, 3], s1=[2], z1=[2], b1=[2], sb1=[2], w2=[2, 2, 1, 1], s2=[2]),
    ),
    Case(
        "qdq-matmul-per-column-asymmetric",
        QDQ_MATMUL,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"w1:1": 8, "s1:0": 8, "z1:0": 8, "b1:0": 8, "w2:0": 8},
        pinned={"w2:1": GRAPH_OUT, "s2:0": GRAPH_OUT},
        ratios=(0.5, 0.25),
        check=shapes(w1=[6, 4], s1=[4], z1=[4], w2=[4, 3], s2=[3]),
    ),
    Case(
        "qdq-blocked-scales-pin",
        BLOCKED,
        opset=21,
        positive=("s2",),
        groups=0,
        pinned={"w1:0": ("dw2", "DequantizeLinear"), "w2:0": ("dw2", "DequantizeLinear")},
        runs=False,  # analysis only: the point is the pin
    ),
    Case(
        "dynamic-conv-integer",
        CONV_INTEGER,
        opset=OPSET,
        positive=SCALES,
        groups=2,
        prunable={"w1:0": 4, "b1:0": 4, "wq:1": 4, "wq:0": 3, "w2:1": 3},
        pinned={"w1:1": GRAPH_IN, "w2:0": GRAPH_OUT},
        check=shapes(w1=[2, 3, 3, 3], b1=[2], wq=[2, 2, 1, 1]),
    ),
    Case(
        "dynamic-depthwise-conv-integer",
        DEPTHWISE_CONV_INTEGER,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"w1:0": 4, "wq:0": 4, "w2:1": 4},
        rewrites=(("dw", "group"),),
        check=then(shapes(w1=[2, 3, 3, 3], wq=[2, 1, 3, 3], w2=[2, 2, 1, 1]), attr_is("dw", "group", 2)),
    ),
    Case(
        "dynamic-matmul-integer",
        MATMUL_INTEGER,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"w1:1": 8, "b1:0": 8, "bq:0": 8},
        pinned={"bq:1": GRAPH_OUT, "bz:0": GRAPH_OUT},
        check=shapes(w1=[6, 4], b1=[4], bq=[4, 3], bz=[3]),
    ),
    Case(
        "qlinear-conv-depthwise",
        QLINEAR_CONV,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"w1:0": 4, "s1:0": 4, "z1:0": 4, "b1:0": 4, "wd:0": 4, "sd:0": 4, "w2:1": 4},
        pinned={"w2:0": GRAPH_OUT, "s2:0": GRAPH_OUT},
        rewrites=(("dw", "group"),),
        check=then(shapes(w1=[2, 3, 3, 3], wd=[2, 1, 3, 3], w2=[2, 2, 1, 1]), attr_is("dw", "group", 2)),
    ),
    Case(
        "qlinear-matmul-per-column",
        QLINEAR_MATMUL,
        opset=OPSET,
        positive=SCALES,
        groups=1,
        prunable={"bq:1": 8, "bs:0": 8, "bz:0": 8, "w2:0": 8},
        pinned={"bq:0": GRAPH_IN},
        check=shapes(bq=[6, 4], bs=[4], bz=[4], w2=[4, 3]),
    ),
    Case(
        "qgemm-reduction-axis-with-zero-points",
        QGEMM,
        opset=OPSET,
        domains=MS,
        positive=SCALES,
        groups=1,
        prunable={"w1:1": 8, "b1:0": 8, "bq:1": 8},
        check=shapes(w1=[6, 4], b1=[4], bq=[3, 4], bs=[3], bz=[3], c=[3]),
        note="ONNX's and ONNX Runtime's shape inference give QGemm's output no shape: its N side "
        "cannot be sized, so only the reduction axis prunes",
    ),
    Case(
        "qlinear-add-mul-couple-their-inputs",
        QLINEAR_ADD_MUL,
        opset=OPSET,
        domains=MS,
        positive=SCALES,
        groups=1,
        prunable={"w1:0": 4, "s1:0": 4, "w3:0": 4, "s3:0": 4, "w2:1": 4},
        pinned={"w2:0": GRAPH_OUT},
        check=shapes(w1=[2, 3, 3, 3], w3=[2, 3, 1, 1], w2=[2, 2, 1, 1]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_masking_sets_a_removed_quantized_weight_to_its_zero_point():
    model = build(QDQ_MATMUL, opset=OPSET, positive=SCALES)
    result = onnxprune.prune(model, ratio=0.5)
    (sliced,) = [s for s in result.plan.slices if s.tensor == "w2"]
    masked = _weight(masked_model(model, result.plan), "w2")
    removed = sorted(set(range(8)) - set(sliced.keep))
    assert sliced.role == "in" and removed
    assert (masked[removed] == 0).all()  # symmetric int8: no zero point, zero is zero
    (first,) = [s for s in result.plan.slices if s.tensor == "w1"]
    assert first.role == "out"  # output columns are sliced, not masked


def test_masking_fills_an_asymmetric_weight_with_its_zero_point():
    model = build(MATMUL_INTEGER, opset=OPSET, positive=SCALES)
    result = onnxprune.prune(model, ratio=0.5)
    (sliced,) = [s for s in result.plan.slices if s.tensor == "bq"]
    removed = sorted(set(range(8)) - set(sliced.keep))
    masked = _weight(masked_model(model, result.plan), "bq")
    zero_points = _weight(model, "bz")
    assert sliced.role == "in" and removed
    assert (masked[removed] == zero_points[None, :]).all()


def test_masking_zeroes_removed_channels_before_dynamic_quantization():
    model = build(MATMUL_INTEGER, opset=OPSET, positive=SCALES)
    result = onnxprune.prune(model, ratio=0.5)
    masked = masked_model(model, result.plan)
    (dql,) = [n for n in masked.graph.node if n.op_type == "DynamicQuantizeLinear"]
    (mul,) = [n for n in masked.graph.node if dql.input[0] in n.output]
    assert mul.op_type == "Mul" and mul.input[0] == "h"
    mask = _weight(masked, mul.input[1])
    (sliced,) = [s for s in result.plan.slices if s.tensor == "bq"]
    assert mask.tolist() == [1.0 if i in sliced.keep else 0.0 for i in range(8)]


def test_without_the_dynamic_mask_parity_would_fail():
    """The mask is needed: zeroing only the weights leaves the quantization range of the
    removed channels in the masked original, and its outputs differ from the pruned model's."""
    model = build(MATMUL_INTEGER, opset=OPSET, positive=SCALES)
    result = onnxprune.prune(model, ratio=0.5)
    assert onnxprune.validate(model, result.model, result.plan)
    masked = masked_model(model, result.plan)
    (mul,) = [n for n in masked.graph.node if n.op_type == "Mul" and n.input[0] == "h"]
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32) * 4}
    with_mask = ort_session(masked).run(None, feeds)[0]
    mul.input[1] = "__ones"
    masked.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(8, np.float32), "__ones"))
    without = ort_session(masked).run(None, feeds)[0]
    pruned = ort_session(result.model).run(None, feeds)[0]
    assert np.array_equal(with_mask, pruned)
    assert not np.array_equal(without, pruned)


def test_output_steps_follow_how_the_output_is_made():
    """The quantization step parity allows on each output (docs/quantization.md)."""
    from onnxprune.quantmask import RANGE_STEP, output_steps

    qlinear = build(QLINEAR_CONV, opset=OPSET, positive=SCALES)
    sy = float(_weight(qlinear, "sy"))
    assert output_steps(qlinear) == {"y": (sy, 0.0)}  # made by a DequantizeLinear: its scale
    assert output_steps(build(QDQ_CONV, opset=OPSET, positive=SCALES)) == {}  # float Conv: float tolerance
    dynamic = build(MATMUL_INTEGER, opset=OPSET, positive=SCALES)
    assert output_steps(dynamic) == {"y": (0.0, RANGE_STEP)}  # run-time scales: one step of the range


def test_one_step_is_allowed_and_two_are_not():
    from onnxprune.parity import _compare

    ref = np.array([1.0, 2.0, 4.0], np.float32)
    off = ref + np.array([0.0, 0.01, 0.0], np.float32)
    assert not _compare("y", ref, off, 1e-4).ok  # float tolerance alone
    assert _compare("y", ref, off, 1e-4, (0.0, 1 / 255)).ok  # 0.01 <= 4 / 255
    assert not _compare("y", ref, ref + np.float32(0.02), 1e-4, (0.0, 1 / 255)).ok
    assert _compare("q", np.array([3], np.uint8), np.array([4], np.uint8), 1e-4, (1.0, 0.0)).ok
    assert not _compare("q", np.array([3], np.uint8), np.array([5], np.uint8), 1e-4, (1.0, 0.0)).ok
