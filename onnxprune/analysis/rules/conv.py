"""Convolutions: plain, grouped, depthwise, and transposed."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.index_map import IndexMap
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import opt_input


@channel_rule("Conv", counts=("group",), per_channel=(2,))
def conv(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y[:, o] = sum over the input channels of o's group of W[o, i] * X[:, i].

    group == 1: input channels <-> W axis 1 (role in), output channels <-> W axis 0 and bias.
    Depthwise-like (W axis 1 == 1): input channel c <-> its block of output channels; the
    group count becomes the kept input channel count. Other grouped convs keep the group
    count: a channel's local index inside its group is removed in every group alike.
    """
    return conv_flow(node, ctx, node.input[0], node.input[1], node.output[0], opt_input(node, 2))


def conv_flow(
    node: onnx.NodeProto, ctx: RuleContext, x: str, w: str, y: str, bias: str | None
) -> ChannelFlow:
    """The flow of `conv` for a convolution reading `x`, weight `w` (an initializer or a
    dequantized one) and `bias`, writing `y` (also the rule of the quantized convolutions)."""
    flow = FlowBuilder()
    w_shape, x_channels = ctx.shape(w), ctx.size((x, 1))
    if not ctx.is_weight_like(w) or w_shape is None or x_channels is None:
        return _pinned(node, ctx, w)
    group = int(ctx.attr(node, "group", 1))
    cout, cin_g = int(w_shape[0]), int(w_shape[1])
    flow.link((y, 1), (w, 0))
    flow.role((w, 0), "out")
    if bias:
        flow.link((y, 1), (bias, 0))
        flow.role((bias, 0), "out")
    if group == 1:
        flow.link((x, 1), (w, 1))
        flow.role((w, 1), "in")
    elif cin_g == 1 and x_channels == group:
        flow.link((x, 1), (y, 1), IndexMap.blocks(cout // group))
    else:
        flow.link((x, 1), (w, 1), IndexMap.modulo(cin_g))
        flow.role((w, 1), "in")
        local = flow.virtual_dim(f"{y}::conv_group_local_out", cout // group)
        flow.link((y, 1), local, IndexMap.modulo(cout // group))
    flow.link((x, 0), (y, 0))
    return flow.build()


@channel_rule("ConvTranspose", counts=("group",), per_channel=(2,))
def conv_transpose(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """W is [C_in, C_out / group, k...]: input channels <-> W axis 0, output channels <-> W axis 1."""
    flow = FlowBuilder()
    x, w, y = node.input[0], node.input[1], node.output[0]
    w_shape, x_channels = ctx.shape(w), ctx.size((x, 1))
    if not ctx.is_weight_like(w) or w_shape is None or x_channels is None:
        return _pinned(node, ctx, w)
    group = int(ctx.attr(node, "group", 1))
    cin, cout_g = int(w_shape[0]), int(w_shape[1])
    bias = opt_input(node, 2)
    if bias:
        flow.link((y, 1), (bias, 0))
        flow.role((bias, 0), "out")
    flow.link((x, 1), (w, 0))
    if group == 1:
        flow.role((w, 0), "in")
        flow.link((y, 1), (w, 1))
        flow.role((w, 1), "out")
    elif cin == group:
        flow.role((w, 0), "out")
        flow.link((x, 1), (y, 1), IndexMap.blocks(cout_g))
    else:
        flow.role((w, 0), "in")
        local_in = flow.virtual_dim(f"{y}::convt_group_local_in", cin // group)
        flow.link((x, 1), local_in, IndexMap.modulo(cin // group))
        flow.link((y, 1), (w, 1), IndexMap.modulo(cout_g))
        flow.role((w, 1), "out")
    flow.link((x, 0), (y, 0))
    return flow.build()


def _pinned(node: onnx.NodeProto, ctx: RuleContext, w: str) -> ChannelFlow:
    """Everything a convolution touches stays when its weight is not a constant (or shapes are unknown)."""
    flow = FlowBuilder()
    source = ctx.producer(w)
    if source is not None:
        reason = f"{node.op_type} weight '{w}' is computed at run time by {source.op_type} '{source.name}'"
    elif not ctx.is_weight(w):
        reason = f"{node.op_type} weight '{w}' is a graph input"
    else:
        reason = f"{node.op_type} input channels or weight shape unknown"
    for tensor in [*node.input, *node.output]:
        if tensor:
            flow.pin_tensor(tensor, reason)
    return flow.build()
