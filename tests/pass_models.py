"""Tiny hand-built models and value_info helpers shared by the pass tests (test_passes_*.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def parse(text: str, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A checked model from ONNX text, with `weights` added as initializers."""
    model = onnx.parser.parse_model(HEADER + text)
    for name, array in (weights or {}).items():
        model.graph.initializer.append(numpy_helper.from_array(array, name))
    onnx.checker.check_model(model)
    return model


def dims_of(info: onnx.ValueInfoProto) -> list[int | str]:
    """Dims of a value: numbers, symbol names, or '' for an unnamed open dim."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in info.type.tensor_type.shape.dim]


def value_info(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    return {vi.name: dims_of(vi) for vi in model.graph.value_info}


def declare(model: onnx.ModelProto, name: str, dims: list[int | str | None]) -> None:
    model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))


CONV_TEXT = """g (float[N, 3, 8, 8] x) => (float[N, 64] y) <int64[2] s = {0, -1}> {
    h = Conv <pads = [1, 1, 1, 1]> (x, w)
    r = Relu (h)
    p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
    y = Reshape (p, s) }"""


def conv_model(filters: int = 4) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv (4 filters, 108 weights: no data in the skeleton) -> Relu -> MaxPool ->
    Reshape to [N, 64] by an int64 shape constant [0, -1]."""
    weights = {"w": np.ones((filters, 3, 3, 3), dtype=np.float32)}
    return parse(CONV_TEXT, weights)
