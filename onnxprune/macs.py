"""Multiply-accumulate formulas of the ops whose cost pruning removes.

A formula is a function `(node, shapes) -> int` tagged with the op types it counts
(`@macs_of("Conv")`); `shapes` gives the static shape of the node's inputs and outputs and raises
ShapeUnknownError naming the node when one is unknown. The op table (`onnxprune.optable`) joins
each formula to its op's entry; `onnxprune.metrics` sums them over a graph.

>>> shapes = NodeShapes({"x": [1, 8], "w": [8, 4], "y": [1, 4]}, onnx.helper.make_node(
...     "MatMul", ["x", "w"], ["y"]), 0)
>>> matmul_macs(shapes.node, shapes)
32
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import onnx

from onnxprune.errors import ModelError
from onnxprune.graph import norm_domain

_TAG = "__macs_of__"


class ShapeUnknownError(ModelError, ValueError):
    """Shape inference could not give a shape that a MAC count needs (names the node and op)."""


class NodeShapes:
    """Static shapes of one node's inputs and outputs, from `shapes` (name -> dims or None);
    `position` is the node's index in its graph (names an unnamed node in errors)."""

    def __init__(self, shapes: Mapping[str, list[int] | None], node: onnx.NodeProto, position: int) -> None:
        self.shapes = shapes
        self.node = node
        self.position = position

    @property
    def label(self) -> str:
        return self.node.name or f"#{self.position} (unnamed)"

    def __call__(self, index: int, *, output: bool = False) -> list[int]:
        """Shape of input `index` (output `index` with `output`); ShapeUnknownError if unknown."""
        names = self.node.output if output else self.node.input
        name = names[index] if index < len(names) else ""
        shape = self.shapes.get(name) if name else None
        if shape is None:
            kind = "output" if output else "input"
            raise self.error(
                f"shape inference gives no static shape for {kind} {index} ('{name}'), needed to count "
                "MACs; give the graph's dynamic input dims in input_shapes"
            )
        return shape

    def error(self, message: str) -> ShapeUnknownError:
        return ShapeUnknownError(message, node=self.label, op_type=self.node.op_type)


MacFormula = Callable[[onnx.NodeProto, NodeShapes], int]


def macs_of(*op_types: str, domain: str = "") -> Callable[[MacFormula], MacFormula]:
    """Tag `fn` as the MAC formula of each op type in `op_types` (of `domain`)."""

    def wrap(fn: MacFormula) -> MacFormula:
        setattr(fn, _TAG, (*getattr(fn, _TAG, ()), *((norm_domain(domain), op) for op in op_types)))
        return fn

    return wrap


def formula_ops(fn: object) -> tuple[tuple[str, str], ...]:
    """The (domain, op type) pairs `@macs_of` tagged `fn` with (empty for anything else)."""
    return getattr(fn, _TAG, ()) if callable(fn) else ()


@macs_of("Conv")
def conv_macs(node: onnx.NodeProto, shape: NodeShapes) -> int:
    """Output elements x C_in/group x kernel."""
    return math.prod(shape(0, output=True)) * math.prod(shape(1)[1:])


@macs_of("ConvTranspose")
def conv_transpose_macs(node: onnx.NodeProto, shape: NodeShapes) -> int:
    """Input elements x C_out/group x kernel."""
    return math.prod(shape(0)) * math.prod(shape(1)[1:])


@macs_of("Gemm")
def gemm_macs(node: onnx.NodeProto, shape: NodeShapes) -> int:
    """M x N x K from A and B alone (transA / transB respected)."""
    a, b = shape(0), shape(1)
    if len(a) != 2 or len(b) != 2:
        raise shape.error(f"Gemm inputs have shapes {a} and {b}, expected rank 2")
    trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
    trans_b = any(attr.name == "transB" and attr.i for attr in node.attribute)
    (m, k), n = (a[::-1] if trans_a else a), (b[0] if trans_b else b[1])
    return m * n * k


@macs_of("MatMul")
def matmul_macs(node: onnx.NodeProto, shape: NodeShapes) -> int:
    """numpy matmul: broadcast batch x M x N x K; a 1-D operand has no M (N)."""
    a, b = shape(0), shape(1)
    if not a or not b:
        raise shape.error(f"MatMul inputs have shapes {a} and {b}")
    try:
        batch = math.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))
    except ValueError as exc:
        raise shape.error(f"MatMul inputs {a} and {b} do not broadcast") from exc
    m = a[-2] if len(a) > 1 else 1
    n = b[-1] if len(b) > 1 else 1
    return batch * m * n * a[-1]


@macs_of("LSTM", "GRU", "RNN")
def recurrent_macs(node: onnx.NodeProto, shape: NodeShapes) -> int:
    """Steps x batch x (W + R elements): every step multiplies the input by W and the state by R
    in each direction (the elementwise gate arithmetic is not counted)."""
    x, w, r = shape(0), shape(1), shape(2)
    if len(x) != 3:
        raise shape.error(f"{node.op_type} input has shape {x}, expected rank 3")
    return x[0] * x[1] * (math.prod(w) + math.prod(r))
