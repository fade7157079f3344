"""Fused attention ops of opset 23: Attention and RotaryEmbedding, with their head counts.

In the 3-D layout ([batch, sequence, heads * head_dim]) a head is a block of `head_dim`
positions of the last axis; a virtual axis of one position per head couples Q, K, V and the
output, and the head-count attributes are rewritten from it.
"""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.index_map import IndexMap
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import opt_input

Q_HEADS = "::attention_q_heads"
KV_HEADS = "::attention_kv_heads"
ROPE_HEADS = "::rotary_heads"


@channel_rule("Attention", counts=("q_num_heads", "kv_num_heads"))
def attention(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y = softmax(Q Kᵀ * scale + mask) V, per head; K/V heads serve groups of query heads (GQA).

    Heads couple Q, K, V, the output and a per-head mask axis; query head h reads KV head
    h // (Hq / Hkv), so a KV head is pruned with its whole group. The head dim of Q and K is
    contracted (and sets the default scale): pinned. Caches (past/present) pin everything.
    """
    flow = FlowBuilder()
    q, k, v, y = node.input[0], node.input[1], node.input[2], node.output[0]
    extra = [n for n in (*node.input[4:], *node.output[1:]) if n]
    ranks = [ctx.rank(t) for t in (q, k, v, y)]
    if extra or None in ranks or len(set(ranks)) != 1:
        for t in (*node.input, *node.output):
            if t:
                flow.pin_tensor(t, "Attention with key/value caches or unknown ranks")
        return flow.build()
    rank = ranks[0]
    mask = opt_input(node, 3)
    if rank == 4:
        hq, hkv = ctx.size((q, 1)), ctx.size((k, 1))
        for axis in (0, 1, 2):
            flow.link((q, axis), (y, axis))
        flow.link((v, 3), (y, 3))
        flow.link((k, 1), (v, 1))
        flow.link((k, 0), (v, 0))
        flow.link((k, 2), (v, 2))
        if hq and hkv and hq % hkv == 0:
            flow.link((k, 1), (q, 1), IndexMap.blocks(hq // hkv) if hq != hkv else None)
        heads = (q, 1)
        reason = "Attention contracts the head dim of Q and K"
        flow.pin((q, 3), reason)
        flow.pin((k, 3), reason)
    else:
        hq, hkv = ctx.attr(node, "q_num_heads"), ctx.attr(node, "kv_num_heads")
        widths = [ctx.size((t, 2)) for t in (q, k, v, y)]
        if (
            not hq
            or not hkv
            or None in widths
            or hq % hkv
            or any(w % h for w, h in zip(widths, (hq, hkv, hkv, hq), strict=True))
        ):
            for t in (q, k, v, y):
                flow.pin_tensor(t, "Attention head counts do not divide the hidden sizes")
            return flow.build()
        heads = flow.virtual_dim(y + Q_HEADS, int(hq))
        kv = flow.virtual_dim(y + KV_HEADS, int(hkv))
        flow.link(heads, (q, 2), IndexMap.blocks(widths[0] // hq))
        flow.link(heads, (y, 2), IndexMap.blocks(widths[3] // hq))
        flow.link(kv, (k, 2), IndexMap.blocks(widths[1] // hkv))
        flow.link(kv, (v, 2), IndexMap.blocks(widths[2] // hkv))
        flow.link(kv, heads, IndexMap.blocks(hq // hkv) if hq != hkv else None)
        flow.link((q, 0), (y, 0))
        flow.link((q, 1), (y, 1))
        flow.link((k, 1), (v, 1))
    if mask:
        mask_shape = ctx.shape(mask)
        head_size = ctx.size(heads) if rank == 4 else hq
        if mask_shape is not None and len(mask_shape) >= 3 and mask_shape[-3] == head_size and head_size != 1:
            flow.link((mask, len(mask_shape) - 3), heads)
    return flow.build()


@channel_rule("RotaryEmbedding", counts=("num_heads",))
def rotary_embedding(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Rotates pairs of positions inside each head: the head dim is pinned, heads pass through.

    4-D input [batch, heads, sequence, head_dim]; 3-D input [batch, sequence, heads * head_dim]
    with `num_heads`, rewritten when heads go.
    """
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank == 4:
        for axis in (0, 1, 2):
            flow.link((x, axis), (y, axis))
        flow.pin((x, 3), "RotaryEmbedding rotates positions inside the head dim")
        return flow.build()
    heads, width = ctx.attr(node, "num_heads"), ctx.size((x, 2))
    if rank != 3 or not heads or width is None or width % heads:
        flow.pin_tensor(x, "RotaryEmbedding without a head count that divides the hidden size")
        return flow.build()
    virtual = flow.virtual_dim(y + ROPE_HEADS, int(heads))
    flow.link(virtual, (x, 2), IndexMap.blocks(width // heads))
    flow.link(virtual, (y, 2), IndexMap.blocks(width // heads))
    flow.link((x, 0), (y, 0))
    flow.link((x, 1), (y, 1))
    return flow.build()
