"""Helpers shared by the op rules."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import FlowBuilder, RuleContext


def opt_input(node: onnx.NodeProto, index: int) -> str | None:
    """Name of optional input `index`, or None when absent."""
    return node.input[index] if len(node.input) > index and node.input[index] else None


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def link_same_axes(
    flow: FlowBuilder, ctx: RuleContext, src: str, dst: str, skip: set[int] = frozenset()
) -> None:
    """Identity-link every axis of `src` to the same axis of `dst` (same rank), except `skip`."""
    rank = ctx.rank(src)
    if rank is None or rank != ctx.rank(dst):
        return
    flow.link_axes(src, dst, (axis for axis in range(rank) if axis not in skip))


def int_list(ctx: RuleContext, node: onnx.NodeProto, attr: str, input_index: int) -> list[int] | None:
    """An integer list given as attribute `attr` (older opsets) or as constant input `input_index`."""
    value = ctx.attr(node, attr)
    if value is not None:
        return [int(v) for v in value]
    name = opt_input(node, input_index)
    if name is None:
        return None
    const = ctx.small_const(name)
    return None if const is None else [int(v) for v in const.reshape(-1)]
