"""Normalizations: per-channel ones pass channels through; those over channels pin them."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import link_same_axes, norm_axis, opt_input


@channel_rule("BatchNormalization", per_channel=(1, 2, 3, 4))
@channel_rule("InstanceNormalization", per_channel=(1, 2))
def per_channel_norm(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = scale[c] * normalize(X)[c] + B[c]: every channel on its own; parameters follow axis 1."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    if len([o for o in node.output if o]) > 1:
        flow.pin_tensor(x, f"{node.op_type} in training mode (running statistics are outputs)")
        return flow.build()
    link_same_axes(flow, ctx, x, y)
    for param in node.input[1:]:
        if param:
            flow.link((x, 1), (param, 0))
            flow.role((param, 0), "out")
    return flow.build()


@channel_rule("LayerNormalization", per_channel=(1, 2))
@channel_rule("RMSNormalization")
def layer_norm(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Normalizes over axes [axis, rank): those axes are pinned, statistics would change."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    first = norm_axis(int(ctx.attr(node, "axis", -1)), rank)
    normalized = set(range(first, rank))
    for axis in sorted(normalized):
        flow.pin(
            (x, axis), f"{node.op_type} normalises over axis {axis}: removing channels changes its statistics"
        )
    link_same_axes(flow, ctx, x, y, skip=normalized)
    return flow.build()


@channel_rule("GroupNormalization", per_channel=(1, 2))
@channel_rule("LpNormalization", "LRN", "MeanVarianceNormalization")
def cross_channel_norm(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Statistics across channels (or over axes given by attribute): those axes are pinned."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    if node.op_type == "LpNormalization":
        pinned = {norm_axis(int(ctx.attr(node, "axis", -1)), rank)}
    elif node.op_type == "MeanVarianceNormalization":
        pinned = {norm_axis(int(a), rank) for a in ctx.attr(node, "axes", [0, 2, 3])}
    else:
        pinned = {1} | set(range(2, rank)) if node.op_type == "GroupNormalization" else {1}
    for axis in sorted(pinned):
        flow.pin((x, axis), f"{node.op_type} mixes values along axis {axis}")
    link_same_axes(flow, ctx, x, y, skip=pinned)
    scale = opt_input(node, 1)
    if scale and node.op_type == "GroupNormalization":
        flow.pin_tensor(scale, "GroupNormalization parameters follow the pinned channel axis")
    return flow.build()
