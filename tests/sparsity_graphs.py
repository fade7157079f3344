"""Tiny models for the weight-sparsity tests: a CNN (three Convs and a Gemm with transB) and an MLP
(three MatMuls), with named nodes and random non-zero weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, weights: dict[str, np.ndarray], inputs, outputs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _weights(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Non-zero weights with distinct magnitudes (no ties), random signs."""
    out = {}
    for name, shape in shapes.items():
        mag = rng.uniform(0.05, 1.0, size=shape)
        out[name] = mag * rng.choice([-1.0, 1.0], size=shape)
    return out


def cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N, 8, 6, 6] -> conv1 (8->16, 3x3) -> Relu -> conv2 (16->16, 3x3, pad 1) -> Relu ->
    conv3 (16->8, 1x1) -> GlobalAveragePool -> Flatten -> fc (Gemm transB, 8->4)."""
    rng = np.random.default_rng(seed)
    w = _weights(
        rng, {"conv1.w": (16, 8, 3, 3), "conv2.w": (16, 16, 3, 3), "conv3.w": (8, 16, 1, 1), "fc.w": (4, 8)}
    )
    w.update({"conv1.b": rng.normal(size=16), "conv2.b": rng.normal(size=16), "fc.b": rng.normal(size=4)})
    nodes = [
        helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "conv3.w"], ["c3"], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        w,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )


def mlp(seed: int = 0, scales: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> onnx.ModelProto:
    """x[N, 16] -> mm1 (16->32) -> Relu -> mm2 (32->16) -> Relu -> mm3 (16->4); each weight
    multiplied by its `scales` entry."""
    rng = np.random.default_rng(seed)
    w = _weights(rng, {"w1": (16, 32), "w2": (32, 16), "w3": (16, 4)})
    for name, scale in zip(("w1", "w2", "w3"), scales, strict=True):
        w[name] = w[name] * scale
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="mm2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("MatMul", ["r2", "w3"], ["y"], name="mm3"),
    ]
    return _model(
        nodes,
        w,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
