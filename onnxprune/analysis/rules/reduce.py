"""Pooling, reductions, softmax-like ops and shape queries."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import int_list, link_same_axes, norm_axis


@channel_rule("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def pool(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Pooling works per channel over spatial axes: batch and channels pass through.

    MaxPool's optional Indices output encodes flat positions that include the channel
    index, so it pins the channels.
    """
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    if len(node.output) > 1 and node.output[1]:
        flow.pin((x, 1), "MaxPool Indices output encodes channel positions")
        return flow.build()
    flow.link((x, 0), (y, 0))
    flow.link((x, 1), (y, 1))
    return flow.build()


REDUCES = (
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
)


@channel_rule(*REDUCES)
def reduce(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Reduced axes are pinned (every position contributes); the others pass through.

    A reduction over spatial axes (squeeze-excitation) keeps channels independent; one over
    the channel axis pins it.
    """
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    axes = int_list(ctx, node, "axes", 1)
    if axes is None:
        if len(node.input) > 1 and node.input[1]:
            flow.pin_tensor(x, f"{node.op_type} axes are computed at run time")
            return flow.build()
        axes = [] if ctx.attr(node, "noop_with_empty_axes", 0) else list(range(rank))
    reduced = {norm_axis(a, rank) for a in axes}
    keepdims = bool(ctx.attr(node, "keepdims", 1))
    j = 0
    for i in range(rank):
        if i in reduced:
            flow.pin((x, i), f"{node.op_type} reduces over axis {i}")
            j += keepdims
            continue
        flow.link((x, i), (y, j))
        j += 1
    return flow.build()


@channel_rule("Softmax", "LogSoftmax", "Hardmax")
def softmax(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Normalizes across `axis` (opset < 13: across all axes from `axis` on): those are pinned."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    if ctx.opset >= 13:
        pinned = {norm_axis(int(ctx.attr(node, "axis", -1)), rank)}
    else:
        pinned = set(range(norm_axis(int(ctx.attr(node, "axis", 1)), rank), rank))
    for axis in sorted(pinned):
        flow.pin((x, axis), f"{node.op_type} normalises across axis {axis}")
    link_same_axes(flow, ctx, x, y, skip=pinned)
    return flow.build()


@channel_rule("ArgMax", "ArgMin", "TopK", "CumSum", "ReverseSequence")
def along_axis(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Ops whose result depends on position along `axis`: that axis is pinned, others pass."""
    flow = FlowBuilder()
    x = node.input[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    if node.op_type == "CumSum":
        axis_const = ctx.small_const(node.input[1])
        if axis_const is None:
            return flow.build()
        axis = norm_axis(int(axis_const.reshape(-1)[0]), rank)
    elif node.op_type == "ReverseSequence":
        axis = int(ctx.attr(node, "time_axis", 0))
    else:
        axis = norm_axis(int(ctx.attr(node, "axis", -1 if node.op_type == "TopK" else 0)), rank)
    flow.pin((x, axis), f"{node.op_type} depends on positions along axis {axis}")
    keep = node.op_type not in ("ArgMax", "ArgMin") or bool(ctx.attr(node, "keepdims", 1))
    for out in node.output:
        if not out:
            continue
        j = 0
        for i in range(rank):
            if i == axis:
                j += keep
                continue
            flow.link((x, i), (out, j))
            j += 1
    return flow.build()


@channel_rule("Shape", "Size")
def shape_query(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """A run-time shape read: the axes whose size it reads are pinned.

    When every reader of a Shape picks fixed entries (Gather or Slice with constant
    indices), only those axes are pinned; otherwise all axes in [start, end). An axis whose
    size only flows, unchanged, into Reshape or Expand targets or Resize sizes is not pinned:
    those ops link their output axis to it (see `layout.reshape`), so its size follows the
    pruning.
    """
    flow = FlowBuilder()
    x = node.input[0]
    rank = ctx.rank(x)
    if rank is None:
        flow.pin_tensor(x, f"{node.op_type} reads the shape of a tensor of unknown rank")
        return flow.build()
    if node.op_type == "Size":
        read = set(range(rank))
    else:
        start = norm_axis(int(ctx.attr(node, "start", 0)), rank)
        end = ctx.attr(node, "end")
        end = rank if end is None else min(norm_axis(int(end), rank), rank)
        read = _axes_read(node.output[0], ctx, list(range(start, end)))
        if _copied_into_targets(node, ctx, x) is not None:
            read = set()  # every size read is sliced away or copied into a target that links it
    for axis in range(rank):
        if axis in read:
            flow.pin((x, axis), f"{node.op_type} reads the size of axis {axis} at run time")
        else:
            flow.free((x, axis))
    return flow.build()


def _axes_read(shape_out: str, ctx: RuleContext, axes: list[int]) -> set[int]:
    consumers = ctx.consumers(shape_out)
    if not consumers or ctx.is_graph_output(
        shape_out
    ):  # a shape nobody in the graph reads is a graph output: every entry is read
        return set(axes)
    read: set[int] = set()
    for consumer in consumers:
        if consumer.input[0] == shape_out and consumer.op_type in ("Gather", "Slice"):
            picked = _picked_entries(consumer, ctx, len(axes))
            if picked is not None:
                read |= {axes[i] for i in picked}
                continue
        return set(axes)
    return read


def _picked_entries(node: onnx.NodeProto, ctx: RuleContext, length: int) -> list[int] | None:
    """Entries of a shape vector of `length` that a Gather or unit-step Slice with constant
    indices or bounds picks, or None if they are not known."""
    if node.op_type == "Gather":
        idx = ctx.small_const(node.input[1])
        if idx is None or int(ctx.attr(node, "axis", 0)) != 0:
            return None
        picked = [int(i) for i in idx.reshape(-1)]
        if any(not -length <= i < length for i in picked):
            return None
        return [i % length for i in picked]
    starts, ends = int_list(ctx, node, "starts", 1), int_list(ctx, node, "ends", 2)
    along = int_list(ctx, node, "axes", 3) or [0]
    steps = int_list(ctx, node, "steps", 4) or [1]
    if starts is None or ends is None or len(starts) != 1 or along not in ([0], [-1]) or steps != [1]:
        return None
    return list(range(length))[starts[0] : ends[0]]


_PASS = ("Gather", "Slice", "Unsqueeze", "Squeeze", "Cast", "Identity", "Concat")


_TARGET_INPUTS = {"Reshape": 1, "Expand": 1, "Resize": 3}
"""Inputs that are shapes whose entries copied from Shape(t) their op links to t's axes."""


def _copied_into_targets(shape_node: onnx.NodeProto, ctx: RuleContext, x: str) -> set[int] | None:
    """Axes of `x` this Shape's values reach, unchanged, in the targets of Reshape or Expand nodes
    or the sizes of Resize nodes (which link their output axes to them); None when the values
    have any other use or a target entry cannot be traced."""
    targets: list[str] = []  # the target inputs reached
    frontier, seen = [shape_node.output[0]], set()
    while frontier:
        tensor = frontier.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        if ctx.is_graph_output(tensor):
            return None
        for consumer in ctx.consumers(tensor):
            slot = _TARGET_INPUTS.get(consumer.op_type)
            if slot is not None and len(consumer.input) > slot and consumer.input[slot] == tensor:
                targets.append(tensor)
            elif (consumer.op_type in _PASS and consumer.input[0] == tensor) or consumer.op_type == "Concat":
                frontier.extend(consumer.output)
            else:
                return None
    copied: set[int] = set()
    for target in targets:
        entries = ctx.shape_entries(target)
        if entries is None or None in entries:
            return None
        copied |= {e[1] for e in entries if isinstance(e, tuple) and e[0] == x}
    return copied if targets else None
