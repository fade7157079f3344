"""Elementwise ops: unary activations pass every axis through; binary ops broadcast."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import link_same_axes
from onnxprune.analysis.rules.vocabulary import compared_table_axes, value_source, vocabulary_reason

UNARY = (
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Erf",
    "Softplus",
    "Softsign",
    "Mish",
    "ThresholdedRelu",
    "Swish",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Sign",
    "Floor",
    "Ceil",
    "Round",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Not",
    "IsNaN",
    "IsInf",
    "Identity",
    "Cast",
    "Shrink",
)


@channel_rule(*(op for op in UNARY if op != "Identity"))
@channel_rule("Identity", per_channel="all")
def unary(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = f(X) elementwise: every axis of X maps to the same axis of Y."""
    flow = FlowBuilder()
    link_same_axes(flow, ctx, node.input[0], node.output[0])
    return flow.build()


@channel_rule("Clip", "Dropout")
def unary_with_scalars(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Clip(X, min, max) and Dropout(X, ratio, training): X passes through; the rest are scalars."""
    flow = FlowBuilder()
    for out in node.output:
        if out:
            link_same_axes(flow, ctx, node.input[0], out)
    return flow.build()


@channel_rule("Add", "Sub", "Mul", "Div", "Max", "Min", per_channel="all")
@channel_rule("PRelu", per_channel=(1,))
@channel_rule(
    "Pow",
    "Sum",
    "Mean",
    "Where",
    "Mod",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "And",
    "Or",
    "Xor",
    "BitShift",
)
def broadcast(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Numpy broadcasting, aligned from the right: every input axis that is not a broadcast
    size-1 axis is the same axis as the output's. A residual Add thereby couples every
    producer feeding it; a per-channel constant (shape [C, 1, 1]) is sliced with the channels.
    """
    flow = FlowBuilder()
    y = node.output[0]
    y_shape = ctx.shape(y)
    if y_shape is None:
        return flow.build()
    for name in node.input:
        shape = ctx.shape(name) if name else None
        if shape is None:
            continue
        offset = len(y_shape) - len(shape)
        for axis, size in enumerate(shape):
            if size == 1 and y_shape[axis + offset] != 1:
                continue
            flow.link((name, axis), (y, axis + offset))
            if ctx.is_weight(name):
                flow.role((name, axis), "out")
    for axis, values in compared_table_axes(node, ctx):
        flow.pin((y, axis), vocabulary_reason(values, value_source(ctx, values)))
    return flow.build()
