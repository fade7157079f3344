"""Gemm and MatMul against constant weights."""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import opt_input


@channel_rule("Gemm", per_channel=(2,))
def gemm(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y[M, N] = A[M, K] @ B[K, N] + C, with transA / transB; one operand a constant weight.

    The reduction axis K couples A and B (the weight's K axis has role in); N couples B, C
    and Y (role out); M passes from A to Y.
    """
    return gemm_flow(FlowBuilder(), node, ctx, (node.input[0], node.input[1], opt_input(node, 2))).build()


def gemm_flow(
    flow: FlowBuilder, node: onnx.NodeProto, ctx: RuleContext, abc: tuple[str, str, str | None]
) -> FlowBuilder:
    """Add the links of `gemm` for A, B and C = `abc` to `flow` (also the rule of the quantized
    Gemm); returns `flow`."""
    (a, b, c), y = abc, node.output[0]
    a_k = 0 if ctx.attr(node, "transA", 0) else 1
    b_k = 1 if ctx.attr(node, "transB", 0) else 0
    a_m, b_n = 1 - a_k, 1 - b_k
    if ctx.is_weight_like(b) and not ctx.is_weight_like(a):
        flow.link((a, a_k), (b, b_k))
        flow.role((b, b_k), "in")
        flow.link((y, 1), (b, b_n))
        flow.role((b, b_n), "out")
        flow.link((y, 0), (a, a_m))
    elif ctx.is_weight_like(a) and not ctx.is_weight_like(b):
        flow.link((b, b_k), (a, a_k))
        flow.role((a, a_k), "in")
        flow.link((y, 0), (a, a_m))
        flow.role((a, a_m), "out")
        flow.link((y, 1), (b, b_n))
    else:
        flow.pin_tensor(a, "Gemm of two run-time tensors (or two constants): reduction not tracked")
        flow.pin_tensor(b, "Gemm of two run-time tensors (or two constants): reduction not tracked")
        return flow
    c_shape = ctx.shape(c) if c else None
    if c and c_shape is not None:
        y_shape = ctx.shape(y) or (None, None)
        for axis_c, axis_y in zip(range(len(c_shape) - 1, -1, -1), (1, 0), strict=False):
            if c_shape[axis_c] != 1 or y_shape[axis_y] == 1:
                flow.link((c, axis_c), (y, axis_y))
                if ctx.is_weight_like(c):
                    flow.role((c, axis_c), "out")
    return flow


@channel_rule("MatMul")
def matmul(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y[..., M, N] = A[..., M, K] @ B[..., K, N] with a constant 2-D weight on one side.

    A MatMul of two run-time tensors (attention scores) links its batch axes and pins the
    reduction axis: removing contracted channels needs the producers' weights, which this
    rule does not see.
    """
    return matmul_flow(FlowBuilder(), ctx, node.input[0], node.input[1], node.output[0]).build()


def matmul_flow(flow: FlowBuilder, ctx: RuleContext, a: str, b: str, y: str) -> FlowBuilder:
    """Add the links of `matmul` for `y = a @ b` to `flow` (also the rule of the quantized
    matrix products); returns `flow`."""
    ra, rb, ry = ctx.rank(a), ctx.rank(b), ctx.rank(y)
    if ra is None or rb is None or ry is None or ra < 2 or rb < 2:
        flow.pin_tensor(a, "MatMul with unknown or 1-D operands")
        flow.pin_tensor(b, "MatMul with unknown or 1-D operands")
        return flow
    flow.link((a, ra - 2), (y, ry - 2))
    flow.link((b, rb - 1), (y, ry - 1))
    if ctx.is_weight_like(b) and not ctx.is_weight_like(a):
        flow.link((a, ra - 1), (b, rb - 2))
        flow.role((b, rb - 2), "in")
        flow.role((b, rb - 1), "out")
    elif ctx.is_weight_like(a) and not ctx.is_weight_like(b):
        flow.link((b, rb - 2), (a, ra - 1))
        flow.role((a, ra - 1), "in")
        flow.role((a, ra - 2), "out")
    else:
        reason = "MatMul contracts two run-time tensors: the reduction axis is pinned"
        flow.pin((a, ra - 1), reason)
        flow.pin((b, rb - 2), reason)
    _link_batch_axes(flow, ctx, a, y, ra - 2, ry - 2)
    _link_batch_axes(flow, ctx, b, y, rb - 2, ry - 2)
    return flow


def _link_batch_axes(flow: FlowBuilder, ctx: RuleContext, src: str, y: str, n_src: int, n_y: int) -> None:
    """Broadcast batch axes, aligned from the right; size-1 broadcast axes are not linked."""
    src_shape, y_shape = ctx.shape(src), ctx.shape(y)
    for i in range(n_src):
        j = i + n_y - n_src
        if src_shape[i] == 1 and y_shape[j] != 1:
            continue
        flow.link((src, i), (y, j))
