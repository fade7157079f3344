"""Quantized graphs: QDQ pairs, dynamic quantization and the QLinear / Integer products.

* `QuantizeLinear` / `DequantizeLinear` are elementwise along every axis; a per-axis scale and
  zero point (1-D, along `axis`) are sliced with the channels of that axis. A DequantizeLinear
  of an initializer (a QDQ weight) makes a value the Conv / Gemm / MatMul rules treat as a
  weight; the stored integer weight takes the role its dequantized value is read with.
* `DynamicQuantizeLinear` computes one scale and zero point from the range of the whole
  tensor. Its range always contains 0, so removing channels quantizes the rest exactly as
  zeroing them would: parity masks the removed channels at its input (docs/quantization.md).
* `ConvInteger`, `QLinearConv`: a convolution (`conv.conv_flow`) with per-output-channel weight
  zero points and scales; `MatMulInteger`, `QLinearMatMul`: a matrix product
  (`linear.matmul_flow`) with per-row / per-column zero points and scales.

Blocked quantization (`block_size`) and scales of any other shape pin what they touch.
"""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import link_same_axes, norm_axis, opt_input
from onnxprune.analysis.rules.conv import conv_flow
from onnxprune.analysis.rules.elementwise import broadcast
from onnxprune.analysis.rules.linear import gemm_flow, matmul_flow


@channel_rule("QuantizeLinear", "DequantizeLinear", per_channel=(1, 2))
def quantize_linear(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = saturate(round(X / scale) + zp), or (X - zp) * scale: every axis of X is the same
    axis of Y; a 1-D scale / zero point of length > 1 runs along `axis` (default 1)."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    link_same_axes(flow, ctx, x, y)
    rank = ctx.rank(x)
    params = [p for p in (node.input[1], opt_input(node, 2)) if p]
    if int(ctx.attr(node, "block_size", 0) or 0) > 0 or rank is None:
        for p in (x, *params):
            flow.pin_tensor(p, f"{node.op_type} with blocked scales or an input of unknown rank")
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", 1)), rank)
    for p in params:
        _link_parameter(flow, ctx, node, p, (x, axis))
    if ctx.is_weight(x):  # a stored quantized weight is read as its dequantized value is
        for k in range(rank):
            flow.role_from((x, k), (y, k))
    return flow.build()


@channel_rule("DynamicQuantizeLinear")
def dynamic_quantize_linear(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = quantize(X) with a scale and zero point from min(0, X.min()) .. max(0, X.max()):
    every axis of X is the same axis of Y (the scalar outputs carry no axis)."""
    flow = FlowBuilder()
    link_same_axes(flow, ctx, node.input[0], node.output[0])
    return flow.build()


@channel_rule("ConvInteger", counts=("group",), per_channel=(3,))
def conv_integer(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y(int32) = conv(X - x_zp, W - w_zp): a Conv whose weight zero point may be per output
    channel (1-D, length C_out); the input zero point is one scalar."""
    x, w, y = node.input[0], node.input[1], node.output[0]
    flow = _extend(conv_flow(node, ctx, x, w, y, None))
    _per_tensor(flow, ctx, node, opt_input(node, 2))
    w_zp = opt_input(node, 3)
    if w_zp:
        _link_parameter(flow, ctx, node, w_zp, (w, 0))
    return flow.build()


@channel_rule("QLinearConv", counts=("group",), per_channel=(4, 5, 8))
def qlinear_conv(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = requantize(conv(X, W) + B) with inputs (x, x_scale, x_zp, w, w_scale, w_zp,
    y_scale, y_zp, B): w_scale and w_zp may be per output channel; the others are scalars."""
    x, w, y = node.input[0], node.input[3], node.output[0]
    flow = _extend(conv_flow(node, ctx, x, w, y, opt_input(node, 8)))
    for index in (1, 2, 6, 7):
        _per_tensor(flow, ctx, node, opt_input(node, index))
    for index in (4, 5):
        _link_parameter(flow, ctx, node, node.input[index], (w, 0))
    return flow.build()


@channel_rule("MatMulInteger", per_channel=(2, 3))
def matmul_integer(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y(int32) = (A - a_zp) @ (B - b_zp): a_zp may be per row of A, b_zp per column of B."""
    a, b, y = node.input[0], node.input[1], node.output[0]
    flow = matmul_flow(FlowBuilder(), ctx, a, b, y)
    _link_matrix_parameters(flow, ctx, node, a, b, (opt_input(node, 2),), (opt_input(node, 3),))
    return flow.build()


@channel_rule("QLinearMatMul", per_channel=(1, 2, 4, 5))
def qlinear_matmul(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = requantize(A @ B) with inputs (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    A's parameters may be per row, B's per column; the output's are scalars."""
    a, b, y = node.input[0], node.input[3], node.output[0]
    flow = matmul_flow(FlowBuilder(), ctx, a, b, y)
    _link_matrix_parameters(flow, ctx, node, a, b, node.input[1:3], node.input[4:6])
    for index in (6, 7):
        _per_tensor(flow, ctx, node, opt_input(node, index))
    return flow.build()


@channel_rule("QGemm", domain="com.microsoft", per_channel=(4, 5, 6))
def qgemm(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """ONNX Runtime's quantized Gemm (QOperator format): inputs (a, a_scale, a_zp, b, b_scale,
    b_zp, C, y_scale, y_zp), transA / transB as Gemm; b's scale and zero point may be per
    column (one per output unit N); A's and the output's are scalars."""
    a, b = node.input[0], node.input[3]
    flow = gemm_flow(FlowBuilder(), node, ctx, (a, b, opt_input(node, 6)))
    n_axis = 0 if ctx.attr(node, "transB", 0) else 1
    for index in (4, 5):
        _link_parameter(flow, ctx, node, node.input[index], (b, n_axis))
    for index in (1, 2, 7, 8):
        _per_tensor(flow, ctx, node, opt_input(node, index))
    return flow.build()


@channel_rule("QLinearAdd", "QLinearMul", domain="com.microsoft")
def qlinear_binary(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """ONNX Runtime's quantized Add / Mul (a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp):
    numpy broadcasting of a and b (a residual Add couples its producers), scalar parameters."""
    values = onnx.NodeProto()
    values.CopyFrom(node)
    del values.input[:]
    values.input.extend([node.input[0], node.input[3]])
    flow = _extend(broadcast(values, ctx))
    for index in (1, 2, 4, 5, 6, 7):
        _per_tensor(flow, ctx, node, opt_input(node, index))
    return flow.build()


def _extend(flow: ChannelFlow) -> FlowBuilder:
    """A builder that starts from `flow` (to add a quantized op's parameters to a conv's)."""
    builder = FlowBuilder(list(flow.links), list(flow.pins), dict(flow.roles), dict(flow.virtual_sizes))
    builder.free_dims.extend(flow.free)
    return builder


def _link_matrix_parameters(flow, ctx, node, a: str, b: str, a_params, b_params) -> None:
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra is None or rb is None or ra < 2 or rb < 2:
        for p in (*a_params, *b_params):
            if p:
                flow.pin_tensor(p, f"{node.op_type} with unknown or 1-D operands")
        return
    for p in a_params:
        if p:
            _link_parameter(flow, ctx, node, p, (a, ra - 2))
    for p in b_params:
        if p:
            _link_parameter(flow, ctx, node, p, (b, rb - 1))


def _link_parameter(flow: FlowBuilder, ctx: RuleContext, node, param: str, along: tuple[str, int]) -> None:
    """A scale or zero point: a scalar (or [1]) applies to every channel; a 1-D one of the
    length of `along` is read per channel of it; any other shape pins."""
    shape = ctx.shape(param)
    if shape is not None and (len(shape) == 0 or (len(shape) == 1 and shape[0] == 1 != ctx.size(along))):
        return
    if shape is None or len(shape) != 1:
        why = f"{node.op_type} parameter '{param}' of shape {shape}: not per tensor or per axis"
        flow.pin_tensor(param, why)
        return
    flow.link(along, (param, 0))
    flow.role((param, 0), "out")


def _per_tensor(flow: FlowBuilder, ctx: RuleContext, node, param: str | None) -> None:
    """A parameter the op defines per tensor: a scalar, or pinned with the reason."""
    if not param:
        return
    shape = ctx.shape(param)
    if shape is None or any(d != 1 for d in shape):
        flow.pin_tensor(param, f"{node.op_type} parameter '{param}' must be one value for the whole tensor")
