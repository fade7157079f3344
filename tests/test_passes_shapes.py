"""Memoized shape inference (passes/shapes.py): InferShapes, ShapeMemo and the weightless skeleton."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune.shapeinfer as shapes_mod
from onnxprune.passes import InferShapes, ShapeMemo
from tests.pass_models import conv_model, dims_of, parse, value_info

# -- InferShapes and ShapeMemo --------------------------------------------------------------


@pytest.fixture
def infer_calls(monkeypatch) -> list[onnx.ModelProto]:
    """Every model ONNX's shape inference runs on, through InferShapes."""
    calls: list[onnx.ModelProto] = []
    real = shapes_mod._infer_onnx

    def counting(model: onnx.ModelProto) -> onnx.ModelProto:
        calls.append(model)
        return real(model)

    monkeypatch.setattr(shapes_mod, "_infer_onnx", counting)
    return calls


def test_shared_memo_infers_an_unchanged_graph_once(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    first = InferShapes(memo=memo)(model)
    second = InferShapes(memo=memo)(model)
    assert len(infer_calls) == 1
    assert first.modified and not second.modified
    assert value_info(model) == {"h": ["N", 4, 8, 8], "r": ["N", 4, 8, 8], "p": ["N", 4, 4, 4]}


def test_value_info_is_what_onnx_inference_gives(infer_calls):
    model = conv_model()
    expected = onnx.shape_inference.infer_shapes(model, data_prop=True)
    InferShapes()(model)
    got = [vi.SerializeToString() for vi in model.graph.value_info]
    assert got == [vi.SerializeToString() for vi in expected.graph.value_info]
    assert len(got) == 3


def test_memo_infers_again_after_a_node_changes(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.node[2].attribute[0].ints[:] = [1, 1]  # MaxPool kernel 2x2 -> 1x1
    result = InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert not result.modified  # stride 2 still halves: (8 - 1) // 2 + 1 = 4
    assert value_info(model)["p"] == ["N", 4, 4, 4]
    model.graph.node[2].attribute[1].ints[:] = [1, 1]  # strides 1
    assert InferShapes(memo=memo)(model).modified
    assert len(infer_calls) == 3
    assert value_info(model)["p"] == ["N", 4, 8, 8]


def test_memo_infers_again_after_a_node_is_added(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.node.insert(2, helper.make_node("Sigmoid", ["r"], ["q"]))
    model.graph.node[3].input[0] = "q"
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["q"] == ["N", 4, 8, 8]


def test_memo_infers_again_when_a_weight_changes_dims(infer_calls):
    # the weight has no data in the skeleton; its dims still decide the conv's output
    memo = ShapeMemo()
    model = conv_model(filters=4)
    InferShapes(memo=memo)(model)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones((6, 3, 3, 3), np.float32), "w"))
    assert model.graph.initializer[1].name == "w"
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["h"] == ["N", 6, 8, 8]


def test_memo_does_not_infer_again_when_only_weight_values_change(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"))
    assert not InferShapes(memo=memo)(model).modified
    assert len(infer_calls) == 1


def test_memo_infers_again_when_a_shape_constant_changes(infer_calls):
    memo = ShapeMemo()
    model = parse(
        """g (float[N, 8] x) => (float[N, 8] y) <int64[3] s = {0, 2, 4}> {
            h = Reshape (x, s)
            y = Flatten (h) }"""
    )
    InferShapes(memo=memo)(model)
    assert value_info(model)["h"] == ["N", 2, 4]
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([0, 4, 2], np.int64), "s"))
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["h"] == ["N", 4, 2]


def test_without_a_shared_memo_each_instance_infers(infer_calls):
    model = conv_model()
    first, second = InferShapes(), InferShapes()
    first(model)
    second(model)
    assert len(infer_calls) == 2
    first(model)  # its own memo remembers the last graph it saw
    assert len(infer_calls) == 2


def test_memo_of_capacity_zero_infers_every_time_without_digesting(infer_calls, monkeypatch):
    digests = []
    original = shapes_mod._Pieces.digest
    monkeypatch.setattr(shapes_mod._Pieces, "digest", lambda self: digests.append(1) or original(self))
    model = conv_model()
    infer = InferShapes(memo=ShapeMemo(capacity=0))
    infer(model)
    infer(model)
    assert len(infer_calls) == 2
    assert not digests


def test_skeleton_declares_large_float_weights_as_inputs_and_keeps_shape_constants():
    model = conv_model()
    small = numpy_helper.from_array(np.ones(64, np.float32), "small_float")
    large_int = numpy_helper.from_array(np.arange(4096, dtype=np.int64), "large_int")
    model.graph.initializer.extend([small, large_int])
    model.graph.output[0].type.tensor_type.ClearField("shape")  # inference must find it
    skeleton = onnx.ModelProto.FromString(shapes_mod._Pieces.of(model, []).serialized())
    kept = {t.name: t for t in skeleton.graph.initializer}
    assert set(kept) == {"s", "small_float", "large_int"}
    assert numpy_helper.to_array(kept["s"]).tolist() == [0, -1]
    inputs = {vi.name: vi for vi in skeleton.graph.input}
    assert set(inputs) == {"x", "w"}
    assert inputs["w"].type.tensor_type.elem_type == TensorProto.FLOAT
    assert dims_of(inputs["w"]) == [4, 3, 3, 3]
    assert not skeleton.graph.value_info
    # the Reshape's output shape is still inferred: its target has its data in the skeleton
    # (without it, inference would know the rank at most)
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    out = {vi.name: dims_of(vi) for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    assert out["y"] == ["N", 64]
    assert out["h"] == ["N", 4, 8, 8]


def test_skeleton_drops_float_weights_over_64_elements():
    model = conv_model()
    model.graph.initializer.append(numpy_helper.from_array(np.ones(65, np.float32), "bias65"))
    skeleton = onnx.ModelProto.FromString(shapes_mod._Pieces.of(model, []).serialized())
    assert "bias65" not in {t.name for t in skeleton.graph.initializer}
    assert "bias65" in {vi.name for vi in skeleton.graph.input}


def test_infer_shapes_fills_an_undeclared_output_and_keeps_the_weights():
    model = conv_model()
    model.graph.output[0].type.tensor_type.ClearField("shape")  # the output type comes from inference
    InferShapes()(model)
    assert dims_of(model.graph.output[0]) == ["N", 64]
    assert {t.name for t in model.graph.initializer} == {"s", "w"}  # the model keeps its weights
    assert "w" not in {vi.name for vi in model.graph.input}


@pytest.mark.parametrize(
    ("name", "data_type", "dims"),
    [
        ("w", onnx.TensorProto.FLOAT, (64, 3, 7, 7)),
        ("blocks.0.norm.weight", onnx.TensorProto.FLOAT16, (128,)),
        ("scalar", onnx.TensorProto.INT64, ()),
        ("wide", onnx.TensorProto.BFLOAT16, (300_000, 1)),
    ],
)
def test_typed_value_info_bytes_match_onnx_helper(name: str, data_type: int, dims: tuple[int, ...]) -> None:
    # the skeleton declares large weights as typed inputs written straight to protobuf bytes
    expected = onnx.helper.make_tensor_value_info(name, data_type, list(dims)).SerializeToString()
    assert shapes_mod._typed_value_info(name, data_type, dims) == expected
