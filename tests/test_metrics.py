"""Parameter and MAC counts on tiny hand-computed graphs written as ONNX text."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune.shapeinfer as shapes_mod
from onnxprune.errors import UsageError
from onnxprune.io import read_model
from onnxprune.metrics import (
    ModelStats,
    ShapeUnknownError,
    count_macs,
    count_params,
    macs_by_node,
    model_stats,
)
from onnxprune.passes import InferShapes, PassManager, normalization_passes

from .conftest import MODELS

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def parse(text: str, weights: dict[str, np.ndarray] | None = None, header: str = HEADER) -> onnx.ModelProto:
    """A checked model from ONNX text, with `weights` added as initializers."""
    model = onnx.parser.parse_model(header + text)
    rng = np.random.default_rng(0)
    for name, array in (weights or {}).items():
        value = array if array.dtype != np.float32 else rng.standard_normal(array.shape).astype(np.float32)
        model.graph.initializer.extend([numpy_helper.from_array(value, name)])
    onnx.checker.check_model(model)
    return model


def zeros(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


# (id, graph text, weights, expected MACs): each count worked out by hand in the comment.
MAC_CASES = [
    (
        # Y [1, 6, 8, 8]; each output element reads C_in/group = 2 channels x 3x3: 384 * 18
        "conv_group_bias",
        """g (float[1, 4, 8, 8] x) => (float[1, 6, 8, 8] y) {
            y = Conv <group = 2, pads = [1, 1, 1, 1]> (x, w, b) }""",
        {"w": zeros(6, 2, 3, 3), "b": zeros(6)},
        6912,
    ),
    (
        # depthwise, stride 2: Y [1, 4, 4, 4] = 64 elements, 1 channel x 3x3 each: 64 * 9
        "depthwise_stride2",
        """g (float[1, 4, 8, 8] x) => (float[1, 4, 4, 4] y) {
            y = Conv <group = 4, strides = [2, 2], pads = [1, 1, 1, 1]> (x, w) }""",
        {"w": zeros(4, 1, 3, 3)},
        576,
    ),
    (
        # X [1, 4, 5, 5] = 100 elements, each scattered to C_out/group = 3 channels x 2x2: 100 * 12
        "conv_transpose",
        """g (float[1, 4, 5, 5] x) => (float[1, 3, 10, 10] y) {
            y = ConvTranspose <strides = [2, 2]> (x, w) }""",
        {"w": zeros(4, 3, 2, 2)},
        1200,
    ),
    (
        # grouped ConvTranspose: W [4, 1, 3, 3], group 2 -> Y [1, 2, 7, 7]; X 4*5*5 = 100 * 1 * 9
        "conv_transpose_group",
        """g (float[1, 4, 5, 5] x) => (float[1, 2, 7, 7] y) {
            y = ConvTranspose <group = 2> (x, w) }""",
        {"w": zeros(4, 1, 3, 3)},
        900,
    ),
    (
        # A [2, 8], B [16, 8] transposed: M=2, N=16, K=8
        "gemm_transB",
        """g (float[2, 8] a) => (float[2, 16] y) { y = Gemm <transB = 1> (a, w, b) }""",
        {"w": zeros(16, 8), "b": zeros(16)},
        256,
    ),
    (
        # A [8, 3] transposed: M=3, K=8; B [8, 5]: N=5 -> 3*5*8 (A's last dim would give 45)
        "gemm_transA",
        """g (float[8, 3] a) => (float[3, 5] y) { y = Gemm <transA = 1> (a, w) }""",
        {"w": zeros(8, 5)},
        120,
    ),
    (
        # X [1, 7, 8] @ W [8, 16]: 7*16 outputs, K=8
        "matmul_const_weight",
        """g (float[1, 7, 8] x) => (float[1, 7, 16] y) { y = MatMul(x, w) }""",
        {"w": zeros(8, 16)},
        896,
    ),
    (
        # two activations, broadcast batch dims: [2, 1, 5, 4] @ [3, 4, 6] -> [2, 3, 5, 6], K=4
        "matmul_activations_broadcast",
        """g (float[2, 1, 5, 4] q, float[3, 4, 6] k) => (float[2, 3, 5, 6] y) { y = MatMul(q, k) }""",
        {},
        720,
    ),
    (
        # attention scores: Q [1, 2, 5, 4] @ Kᵀ [1, 2, 4, 5] -> [1, 2, 5, 5], K=4; plus the
        # projections: X [1, 5, 8] @ W [8, 8] twice, 5*8*8 each
        "attention_scores",
        """g (float[1, 5, 8] x) => (float[1, 2, 5, 5] s) {
            qf = MatMul(x, wq)
            kf = MatMul(x, wk)
            shape = Constant <value = int64[4] {1, 5, 2, 4}> ()
            q4 = Reshape(qf, shape)
            k4 = Reshape(kf, shape)
            q = Transpose <perm = [0, 2, 1, 3]> (q4)
            kt = Transpose <perm = [0, 2, 3, 1]> (k4)
            s = MatMul(q, kt) }""",
        {"wq": zeros(8, 8), "wk": zeros(8, 8)},
        2 * 5 * 5 * 4 + 2 * (5 * 8 * 8),
    ),
    (
        # 1-D @ 2-D: [8] @ [8, 4] -> [4], K=8; the relu costs nothing
        "matmul_vector",
        """g (float[8] x) => (float[4] y) { h = MatMul(x, w)  y = Relu(h) }""",
        {"w": zeros(8, 4)},
        32,
    ),
]


@pytest.mark.parametrize(
    ("text", "weights", "expected"), [c[1:] for c in MAC_CASES], ids=[c[0] for c in MAC_CASES]
)
def test_count_macs_hand_computed(text: str, weights: dict[str, np.ndarray], expected: int) -> None:
    assert count_macs(parse(text, weights)) == expected


def test_big_weights_and_constant_nodes_keep_their_shapes() -> None:
    # weights over the inference size limit are passed to shape inference as inputs: same count
    text = """g (float[1, 3, 64] x) => (float[1, 3, 20] y) {
        c = Constant <value = float[32, 20] {0.0}> ()
        h = MatMul(x, w)
        y = MatMul(h, c) }"""
    model = onnx.parser.parse_model(HEADER + text)
    model.graph.node[0].attribute[0].t.CopyFrom(numpy_helper.from_array(np.ones((32, 20), np.float32), "c"))
    model.graph.initializer.extend([numpy_helper.from_array(np.ones((64, 32), np.float32), "w")])
    assert count_macs(model) == 3 * 32 * 64 + 3 * 20 * 32
    assert count_params(model) == 64 * 32 + 32 * 20


def test_dynamic_dims_take_batch_input_shapes_and_default() -> None:
    model = parse(
        """g (float[N, S, 8] x) => (float[N, S, 16] y) { y = MatMul(x, w) }""",
        {"w": zeros(8, 16)},
    )
    assert count_macs(model) == 1 * 1 * 16 * 8  # batch 1, S -> dynamic_default 1
    assert count_macs(model, batch=3, dynamic_default=5) == 3 * 5 * 16 * 8
    # input_shapes gives S; its entry for the dynamic batch dim is a placeholder
    assert count_macs(model, {"x": [1, 7, 8]}, batch=2) == 2 * 7 * 16 * 8


def test_input_shapes_must_fit_the_inputs() -> None:
    model = parse("""g (float[N, 8] x) => (float[N, 16] y) { y = MatMul(x, w) }""", {"w": zeros(8, 16)})
    with pytest.raises(UsageError, match="'z'"):
        count_macs(model, {"z": [1, 8]})
    with pytest.raises(ValueError, match="dim 1 is 8"):
        count_macs(model, {"x": [1, 9]})
    with pytest.raises(ValueError, match="rank 2"):
        count_macs(model, {"x": [1, 8, 1]})


def test_missing_shape_raises_naming_node_and_op() -> None:
    header = '<ir_version: 8, opset_import: ["" : 17, "custom" : 1]>\n'
    model = onnx.parser.parse_model(
        header
        + """g (float[1, 8] x) => (float[1, 16] y) <float[8, 16] w = {0.0}> {
            h = custom.Opaque(x)
            [proj] y = MatMul(h, w) }"""
    )
    with pytest.raises(ShapeUnknownError, match=r"node 'proj' \(MatMul\)") as info:
        count_macs(model)
    assert isinstance(info.value, ValueError)
    assert "'h'" in str(info.value)


def test_local_functions_are_counted_after_inlining() -> None:
    header = '<ir_version: 8, opset_import: ["" : 17, "local" : 1]>\n'
    text = """g (float[2, 8] x) => (float[2, 4] y) <float[8, 4] w = {0.0}> { y = local.proj(x, w) }
    <domain: "local", opset_import: ["" : 17]>
    proj (a, b) => (c) { c = MatMul(a, b) }"""
    model = onnx.parser.parse_model(header + text)
    assert count_macs(model) == 2 * 4 * 8


def test_stale_annotations_do_not_decide_the_count() -> None:
    model = parse("""g (float[1, 8] x) => (float[1, 16] y) { y = MatMul(x, w) }""", {"w": zeros(8, 16)})
    model.graph.value_info.extend([onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 99])])
    assert count_macs(model) == 16 * 8
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 99  # a stale declared output shape
    assert count_macs(model) == 16 * 8


def test_count_macs_does_not_modify_the_model() -> None:
    model = parse("""g (float[N, 8] x) => (float[N, 16] y) { y = MatMul(x, w) }""", {"w": zeros(8, 16)})
    before = model.SerializeToString()
    count_macs(model, batch=4)
    assert model.SerializeToString() == before


def test_count_params_counts_float_weights_only() -> None:
    text = """g (float[1, 4, 8, 8] x) => (float[1, 384] y, float16[3] z) {
        h = Conv <group = 2, pads = [1, 1, 1, 1]> (x, w, b)
        c = Constant <value = float16[3] {15360, 16384, 16896}> ()
        s = Constant <value = int64[2] {1, 384}> ()
        y = Reshape(h, s)
        z = Identity(c) }"""
    weights = {
        "w": zeros(6, 2, 3, 3),  # 108
        "b": zeros(6),  # 6
        "k": np.zeros((2, 5), np.float64),  # 10, unused but still a weight
        "idx": np.zeros((50,), np.int64),  # not a float: not counted
    }
    model = parse(text, weights)
    assert count_params(model) == 108 + 6 + 10 + 3  # the float16 Constant counts, the int64 one not


def test_model_stats() -> None:
    model = parse(
        """g (float[2, 8] a) => (float[2, 16] y) { y = Gemm <transB = 1> (a, w, b) }""",
        {"w": zeros(16, 8), "b": zeros(16)},
    )
    stats = model_stats(model)
    assert stats == ModelStats(params=16 * 8 + 16, macs=256, size_bytes=model.ByteSize())
    assert stats.size_bytes > (16 * 8 + 16) * 4


# -- macs_by_node(shapes_inferred=True): counts from the model's own inferred value_info --------

# x [N, 3, 8, 8] -> Conv (8 filters, 3x3, pads 1): N*8*8*8 outputs x 3*3*3 = 13824 N
# -> ConvTranspose (stride 2, W [8, 4, 2, 2]): N*8*8*8 inputs x 4*2*2 = 8192 N
# -> GlobalAveragePool -> Flatten [N, 4] -> Gemm (W [10, 4] transposed): N*10 x 4 = 40 N
# t [N, S, 16] -> MatMul (W [16, 16]): N*S*16 x 16 = 256 N S; q @ qᵀ: N*S*S x 16 = 16 N S²
SYMBOLIC_TEXT = """g (float[N, 3, 8, 8] x, float[N, S, 16] t) => (float[N, 10] y, float[N, S, S] z) {
    h = Conv <pads = [1, 1, 1, 1]> (x, w)
    u = ConvTranspose <strides = [2, 2]> (h, wt)
    p = GlobalAveragePool (u)
    f = Flatten (p)
    y = Gemm <transB = 1> (f, wg, bg)
    q = MatMul (t, wq)
    qt = Transpose <perm = [0, 2, 1]> (q)
    z = MatMul (q, qt) }"""
SYMBOLIC_WEIGHTS = {
    "w": zeros(8, 3, 3, 3),
    "wt": zeros(8, 4, 2, 2),
    "wg": zeros(10, 4),
    "bg": zeros(10),
    "wq": zeros(16, 16),
}


def symbolic_macs(n: int, s: int) -> int:
    return (13824 + 8192 + 40) * n + 256 * n * s + 16 * n * s * s


@pytest.fixture
def inferences(monkeypatch) -> list[int]:
    """Counts the ONNX shape inferences run (through the InferShapes passes)."""
    calls: list[int] = []
    real = shapes_mod._infer_onnx

    def counting(model: onnx.ModelProto) -> onnx.ModelProto:
        calls.append(1)
        return real(model)

    monkeypatch.setattr(shapes_mod, "_infer_onnx", counting)
    return calls


def inferred_symbolic_model() -> onnx.ModelProto:
    model = parse(SYMBOLIC_TEXT, SYMBOLIC_WEIGHTS)
    InferShapes()(model)
    return model


def test_inferred_value_info_has_the_batch_symbol() -> None:
    shapes = {vi.name: vi for vi in inferred_symbolic_model().graph.value_info}
    assert shapes["h"].type.tensor_type.shape.dim[0].dim_param == "N"
    assert shapes["q"].type.tensor_type.shape.dim[1].dim_param == "S"


@pytest.mark.parametrize(
    ("kwargs", "n", "s"),
    [
        ({"batch": 1}, 1, 1),
        ({"batch": 3}, 3, 1),
        ({"batch": 3, "dynamic_default": 5}, 3, 5),
        ({"batch": 2, "input_shapes": {"t": [0, 7, 16]}}, 2, 7),
    ],
    ids=["batch1", "batch3", "batch3-default5", "batch2-given7"],
)
def test_macs_from_inferred_shapes_equal_the_inference_path(inferences, kwargs, n, s) -> None:
    model = inferred_symbolic_model()
    before = model.SerializeToString()
    inferences.clear()
    fast = macs_by_node(model, shapes_inferred=True, **kwargs)
    assert not inferences  # every needed shape was in the model already: no inference ran
    assert fast == macs_by_node(model, **kwargs)
    assert sum(fast.values()) == symbolic_macs(n, s)
    assert set(fast) == {"h", "u", "y", "q", "z"}
    assert model.SerializeToString() == before


def test_macs_from_inferred_shapes_fall_back_on_an_unknown_symbol(inferences) -> None:
    model = inferred_symbolic_model()
    (conv_out,) = [vi for vi in model.graph.value_info if vi.name == "h"]
    conv_out.type.tensor_type.shape.dim[0].dim_param = "unk__7"  # no graph input defines it
    inferences.clear()
    for batch in (1, 3):
        fast = macs_by_node(model, batch=batch, shapes_inferred=True)
        assert fast == macs_by_node(model, batch=batch)
        assert sum(fast.values()) == symbolic_macs(batch, 1)
    assert inferences  # the fallback inferred at concrete sizes


def test_macs_from_inferred_shapes_fall_back_on_missing_value_info(inferences) -> None:
    model = inferred_symbolic_model()
    del model.graph.value_info[:]
    inferences.clear()
    assert macs_by_node(model, batch=3, shapes_inferred=True) == macs_by_node(model, batch=3)
    assert inferences


def test_macs_from_inferred_shapes_fall_back_on_an_unnamed_input_dim(inferences) -> None:
    model = inferred_symbolic_model()
    model.graph.input[1].type.tensor_type.shape.dim[1].ClearField("dim_param")  # S becomes '?'
    inferences.clear()
    fast = macs_by_node(model, batch=2, dynamic_default=4, shapes_inferred=True)
    assert fast == macs_by_node(model, batch=2, dynamic_default=4)
    assert sum(fast.values()) == symbolic_macs(2, 4)
    assert inferences


def test_macs_from_inferred_shapes_keep_the_inference_path_errors() -> None:
    model = inferred_symbolic_model()
    with pytest.raises(UsageError, match="'nope'"):
        macs_by_node(model, {"nope": [1]}, shapes_inferred=True)


def test_declared_static_output_batch_does_not_decide_the_count() -> None:
    # valid ONNX (full_check accepts a declared static 1 where inference has N), and normalization
    # keeps declared output types: the output's declared shape is an annotation, not an inferred
    # shape, and (as in test_stale_annotations_do_not_decide_the_count) must not decide the count
    model = parse("""g (float[N, 8] x) => (float[1, 16] y) { y = MatMul(x, w) }""", {"w": zeros(8, 16)})
    onnx.checker.check_model(model, full_check=True)
    PassManager(normalization_passes()).run(model)
    assert macs_by_node(model, batch=3) == {"y": 3 * 16 * 8}
    assert macs_by_node(model, batch=3, shapes_inferred=True) == {"y": 3 * 16 * 8}


REFERENCE_MODELS = sorted(MODELS.glob("*.onnx")) + sorted((MODELS / "torchvision").glob("*.onnx"))


@pytest.mark.parametrize("path", REFERENCE_MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_macs_from_inferred_shapes_on_reference_models(path, inferences) -> None:
    model = read_model(path, lazy=True).model
    PassManager(normalization_passes()).run(model)
    outputs = {o.name for o in model.graph.output}
    # a Conv writing a graph output needs that output's shape, which the fast path does not take
    # from the declared interface: there (only there) it infers
    conv_output = any(n.op_type == "Conv" and n.output[0] in outputs for n in model.graph.node)
    for batch in (1, 3):
        inferences.clear()
        fast = macs_by_node(model, batch=batch, shapes_inferred=True)
        assert bool(inferences) == conv_output, "normalization left a needed shape open"
        slow = macs_by_node(model, batch=batch)
        assert fast == slow
        assert fast and all(v > 0 for v in fast.values())


def test_reshape_target_computed_from_shape_and_constant_nodes_is_folded() -> None:
    # the TorchScript exporter's channel shuffle: the Reshape target is built at run time from
    # Shape, Gather, Div, Unsqueeze and Concat, with every index a Constant node (no initializer)
    model = parse(
        """g (float[N, 8, 5, 5] x) => (float[N, 4] y) {
            s = Shape(x)
            i0 = Constant <value_int = 0> ()
            i1 = Constant <value_int = 1> ()
            two = Constant <value_int = 2> ()
            n = Gather <axis = 0> (s, i0)
            c = Gather <axis = 0> (s, i1)
            half = Div(c, two)
            ax = Constant <value_ints = [0]> ()
            rest = Constant <value_ints = [-1]> ()
            n1 = Unsqueeze(n, ax)
            half1 = Unsqueeze(half, ax)
            t = Concat <axis = 0> (n1, half1, rest)
            g4 = Reshape(x, t)
            flat_shape = Constant <value_ints = [0, -1]> ()
            flat = Reshape(g4, flat_shape)
            y = MatMul(flat, w) }""",
        {"w": zeros(200, 4)},
    )
    assert count_macs(model, batch=3) == 3 * 4 * 200  # [3, 200] x [200, 4]


RAW_REFERENCE_MODELS = sorted(MODELS.glob("**/*.onnx"))


UNCOUNTABLE = {
    "controlflow/refine_loop_torchscript.onnx": (
        "/Loop_output_0",
        "the TorchScript Loop body declares its carried value without a shape: nothing after the "
        "Loop has a static shape, and the count must say which input it lacks",
    ),
    "quantized/resnet18_qoperator.onnx": (
        "getitem_9_quantized",
        "ONNX's shape inference does not know ONNX Runtime's com.microsoft QLinearAdd: the raw file's "
        "QLinearConv after the first residual has no output shape (normalization, which runs ONNX "
        "Runtime's symbolic inference, sizes it: the pruner counts this model's MACs)",
    ),
}
"""Reference models whose MACs cannot be counted as exported: the tensor the error must name."""


@pytest.mark.parametrize("path", RAW_REFERENCE_MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_macs_of_every_exported_model_as_the_exporter_wrote_it(path) -> None:
    # what `onnxprune bench` counts: the file as exported (legacy shape arithmetic included),
    # at two batch sizes; MACs scale with the batch, and the pruner's path counts the same
    model = read_model(path).model
    if f"{path.parent.name}/{path.name}" in UNCOUNTABLE:
        missing, _ = UNCOUNTABLE[f"{path.parent.name}/{path.name}"]
        with pytest.raises(ShapeUnknownError, match=re.escape(missing)):
            count_macs(model, batch=1)
        return
    one, three = count_macs(model, batch=1), count_macs(model, batch=3)
    assert one > 0 and three == 3 * one
    PassManager(normalization_passes()).run(model)
    assert sum(macs_by_node(model, batch=3, shapes_inferred=True).values()) == three


EXPORTER_PAIRS = sorted(p for p in RAW_REFERENCE_MODELS if p.stem.endswith("_dynamo"))


@pytest.mark.parametrize(
    "dynamo", EXPORTER_PAIRS, ids=lambda p: f"{p.parent.name}/{p.stem[: -len('_dynamo')]}"
)
def test_both_torch_exporters_give_the_same_macs(dynamo) -> None:
    torchscript = dynamo.with_name(dynamo.name.replace("_dynamo", "_torchscript"))
    if not torchscript.exists():
        pytest.fail(f"{dynamo.name} has no TorchScript counterpart")
    assert count_macs(read_model(torchscript).model) == count_macs(read_model(dynamo).model)


def test_pads_computed_through_transpose_of_constants_are_folded():
    # the TorchScript exporter's Pad: begin/end pairs reordered by Transpose and Reshape at run time
    model = parse(
        """g (float[N, 4, 5, 5] x) => (float[N, 8, 5, 5] y) {
            pairs = Constant <value = int64[4, 2] {0, 0, 0, 0, 1, 1, 1, 1}> ()
            swapped = Transpose <perm = [1, 0]> (pairs)
            flat = Constant <value_ints = [-1]> ()
            row = Reshape(swapped, flat)
            pads = Cast <to = 7> (row)
            padded = Pad(x, pads)
            y = Conv(padded, w) }""",
        {"w": zeros(8, 4, 3, 3)},
    )
    assert count_macs(model, batch=2) == 2 * (8 * 5 * 5) * (4 * 3 * 3)  # 7x7 padded, 3x3 valid conv
