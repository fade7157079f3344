"""Vocabularies are not channels: an axis indexed by the *values* of a run-time tensor.

A one-hot encoding (`OneHot`, or dynamo's `Equal(Unsqueeze(ids, -1), arange(V))`), an embedding
lookup (`Gather(table, ids)`) and a value compared against a constant table along an axis make
an axis whose position v means "the input holds value v". Removing position v would be
mask-equivalent (its weights zeroed) and still wrong: every input that holds v (a byte, a token)
would lose its embedding. These axes are pinned with a reason `onnxprune analyze` prints; the
rules link the axis to a pinned virtual dim when nothing else would show it (an embedding
table's rows).

>>> vocabulary_reason("ids", "x")
"vocabulary of 'ids' (the values of graph input 'x') is not a channel axis: pinned"
"""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import norm_axis

_CARRY_VALUES = ("Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten", "Transpose")
COMPARISONS = ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")


def vocabulary_reason(indices: str, source: str | None) -> str:
    """The barrier text of a vocabulary axis indexed by the values of `indices` (`source`: the
    graph input they come from, when they do)."""
    origin = f" (the values of graph input '{source}')" if source and source != indices else ""
    if source == indices:
        origin = " (a graph input)"
    return f"vocabulary of '{indices}'{origin} is not a channel axis: pinned"


def value_source(ctx: RuleContext, tensor: str) -> str | None:
    """The graph input whose values `tensor` carries through Cast, Unsqueeze, Squeeze, Reshape,
    Identity, Flatten and Transpose (None when it is computed otherwise)."""
    seen = 0
    while seen < 16:
        node = ctx.producer(tensor)
        if node is None:
            return None if ctx.is_weight(tensor) else tensor
        if node.op_type not in (
            "Cast",
            "Unsqueeze",
            "Squeeze",
            "Reshape",
            "Identity",
            "Flatten",
            "Transpose",
        ):
            return None
        tensor, seen = node.input[0], seen + 1
    return None


def pin_vocabulary(flow: FlowBuilder, ctx: RuleContext, table: str, axis: int, indices: str) -> None:
    """Pin axis `axis` of `table` (a weight whose positions are picked by the values of
    `indices`), through a virtual dim so the analysis reports it."""
    size = ctx.size((table, axis))
    reason = vocabulary_reason(indices, value_source(ctx, indices))
    if size is None:
        flow.pin((table, axis), reason)
        return
    vocab = flow.virtual_dim(f"{table}::vocabulary_{axis}", size)
    flow.link(vocab, (table, axis))
    flow.pin(vocab, reason)


def compared_table_axes(node: onnx.NodeProto, ctx: RuleContext) -> list[tuple[int, str]]:
    """Output axes of a comparison along which a constant of more than one position meets a
    run-time operand broadcast from size 1 (`ids[..., None] == arange(V)`), each with the
    run-time operand."""
    if node.op_type not in COMPARISONS or len(node.input) != 2:
        return []
    y_shape = ctx.shape(node.output[0])
    shapes = [ctx.shape(name) for name in node.input]
    if y_shape is None or None in shapes:
        return []
    found = []
    for const_at in (0, 1):
        table, other = node.input[const_at], node.input[1 - const_at]
        if not ctx.is_weight(table) or ctx.is_weight(other):
            continue
        t_shape, o_shape = shapes[const_at], shapes[1 - const_at]
        for j in range(len(y_shape)):
            t = t_shape[j - len(y_shape) + len(t_shape)] if j >= len(y_shape) - len(t_shape) else 1
            o = o_shape[j - len(y_shape) + len(o_shape)] if j >= len(y_shape) - len(o_shape) else 1
            if t != 1 and o == 1:
                found.append((j, other))
    return found


@channel_rule("OneHot")
def one_hot(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = OneHot(indices, depth, values): the axes of `indices` pass through; the new axis
    (`axis`, default -1) has one position per value: a vocabulary, pinned."""
    flow = FlowBuilder()
    indices, y = node.input[0], node.output[0]
    rank = ctx.rank(y)
    if rank is None or ctx.rank(indices) != rank - 1:
        flow.pin_tensor(y, "OneHot with unknown ranks")
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", -1)), rank)
    for k in range(rank - 1):
        flow.link((indices, k), (y, k if k < axis else k + 1))
    flow.pin((y, axis), vocabulary_reason(indices, value_source(ctx, indices)))
    return flow.build()
