"""The consumers of pruned tensors: nodes that contract a pruned channel axis with a weight.

A consumer reads a data tensor `x` whose channel axis lost positions (it is in `keeps`) through
a constant weight: a Conv (group 1, channel axis 1, weight ``W[o, c, k...]``, bias ``B``), a
Gemm (``transA = 0``, weight ``B`` as ``[c, o]`` or, with ``transB``, ``[o, c]``, bias ``C``)
or a MatMul ``x @ W`` with a constant 2-D ``W[c, o]`` (bias: an ``Add`` of a constant vector
that alone reads its output, if there is one). Every consumer's weight is seen in one layout,
``W3[o, c, t]`` (output, input channel, kernel tap), whatever the op; `read_w3` and `write_w3`
convert.

Consumers are grouped into *levels*: a consumer's level is one more than the highest level of
any consumer upstream of its `x`, so the consumers of one level do not depend on each other and
can be fitted from one run of the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph import consumers as readers_of
from onnxprune.graph import is_default_domain
from onnxprune.weights import get_weight

Dim = tuple[str, int]


@dataclass(frozen=True)
class Consumer:
    """One node reading pruned channels of `x` through weight `weight`.

    `kept` are the kept channel indices of `x` (into the original C); `out_keep` the kept output
    rows of the weight (None: all). `bias` is the bias tensor name (None: the node has none
    yet); `bias_add` the Add node that holds a MatMul's bias; `scale` multiplies W·x in the
    output (Gemm's alpha / beta, so that a change of bias by W·m is written as b += scale·W·m).
    """

    node: str
    op: str
    output: str
    x: str
    axis: int
    weight: str
    kept: np.ndarray
    channels: int
    out_keep: np.ndarray | None
    bias: str | None
    bias_add: str | None
    scale: float = 1.0
    trans_b: bool = False
    conv: tuple[tuple[str, object], ...] = ()
    kernel: tuple[int, ...] = ()
    """A Conv's geometry attributes (pads, strides, dilations, auto_pad), for `taps.coverage`."""


@dataclass(frozen=True)
class Skipped:
    """A node that reads pruned channels but that compensation cannot handle, and why."""

    node: str
    op: str
    reason: str


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _weights(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant" and n.output}
    return names


def _matmul_bias(
    node: onnx.NodeProto, graph: onnx.GraphProto, readers, weights: set[str], out_dim: int
) -> tuple[str | None, str | None]:
    """The (bias tensor, Add node) right after MatMul `node`, or (None, None)."""
    out = node.output[0]
    after = readers.get(out, [])
    if len(after) != 1 or out in {o.name for o in graph.output}:
        return None, None
    add = after[0]
    if add.op_type != "Add" or not is_default_domain(add.domain) or len(add.input) != 2:
        return None, None
    other = add.input[1] if add.input[0] == out else add.input[0]
    if other not in weights or other == out:
        return None, None
    return other, add.name


def _role(node, graph, readers, weights) -> tuple[str, str, int] | str:
    """(x, weight, channel axis or -1 for last) of a supported node, or why it is not one."""
    op = node.op_type
    if not is_default_domain(node.domain):
        return "not a default-domain op"
    if op == "Conv":
        if _attr(node, "group", 1) != 1:
            return "grouped Conv (group > 1): input channels are not contracted over all filters"
        if len(node.input) < 2 or node.input[1] not in weights:
            return "Conv weight is not a constant"
        return node.input[0], node.input[1], 1
    if op == "Gemm":
        if _attr(node, "transA", 0):
            return "Gemm with transA = 1"
        if node.input[1] not in weights:
            return "Gemm weight is not a constant"
        return node.input[0], node.input[1], 1
    if op == "MatMul":
        if node.input[1] not in weights:  # two activations (attention): no weight to refit
            return "MatMul of two activations"
        return node.input[0], node.input[1], -1
    return f"{op} reads the pruned channels (not a Conv, Gemm or MatMul)"


def find_consumers(
    original: onnx.ModelProto, pruned: onnx.ModelProto, keeps: Mapping[Dim, np.ndarray]
) -> tuple[list[Consumer], list[Skipped]]:
    """Every Conv/Gemm/MatMul of `pruned` whose data input lost channels, and the nodes skipped."""
    graph = pruned.graph
    weights = _weights(pruned)
    readers = readers_of(graph.node)
    pruned_axes: dict[str, list[int]] = {}
    for tensor, axis in keeps:
        pruned_axes.setdefault(tensor, []).append(axis)
    found, skipped = [], []
    for node in graph.node:
        if not node.input or node.input[0] not in pruned_axes or node.input[0] in weights:
            continue
        role = _role(node, graph, readers, weights)
        if isinstance(role, str):
            if node.op_type in ("Conv", "Gemm") or (node.op_type == "MatMul" and node.input[0] in weights):
                skipped.append(Skipped(node.name or node.output[0], node.op_type, role))
            continue
        made = _consumer(node, role, original, pruned, keeps, pruned_axes, graph, readers, weights)
        (skipped if isinstance(made, Skipped) else found).append(made)
    return found, skipped


def _consumer(node, role, original, pruned, keeps, pruned_axes, graph, readers, weights):
    x, weight, axis = role
    axes = pruned_axes[x]
    if axis == -1:
        axis = max(axes)
    if axis not in axes:
        return Skipped(
            node.name or node.output[0], node.op_type, f"its input '{x}' lost positions on a non-channel axis"
        )
    w_orig = get_weight(original, weight)
    w_now = get_weight(pruned, weight)
    trans_b = node.op_type == "Gemm" and bool(_attr(node, "transB", 0))
    if node.op_type == "MatMul" and w_orig.ndim != 2:
        return Skipped(node.name or node.output[0], node.op_type, "MatMul weight is not 2-D")
    in_axis = 1 if node.op_type == "Conv" or trans_b else 0
    out_axis = 1 - in_axis if node.op_type != "Conv" else 0
    kept = np.asarray(keeps[(x, axis)])
    if w_now.shape[in_axis] != len(kept) or w_orig.shape[in_axis] <= len(kept):
        return Skipped(
            node.name or node.output[0], node.op_type, "weight input axis does not match the kept channels"
        )
    out_keep = keeps.get((weight, out_axis))
    scale, bias, bias_add = 1.0, None, None
    if node.op_type in ("Conv", "Gemm"):
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if node.op_type == "Gemm":
            beta = float(_attr(node, "beta", 1.0))
            if beta == 0.0:
                return Skipped(
                    node.name or node.output[0], node.op_type, "Gemm with beta = 0 cannot take a bias"
                )
            scale = float(_attr(node, "alpha", 1.0)) / beta
    else:
        bias, bias_add = _matmul_bias(node, graph, readers, weights, w_now.shape[1])
    if bias is not None and bias not in weights:
        return Skipped(node.name or node.output[0], node.op_type, f"bias '{bias}' is not a constant")
    if bias is not None and get_weight(pruned, bias).size != w_now.shape[out_axis]:
        return Skipped(node.name or node.output[0], node.op_type, "bias is not one value per output channel")
    for name in (weight, bias):
        if name is not None and sum(1 for n in graph.node for i in n.input if i == name) > 1:
            return Skipped(node.name or node.output[0], node.op_type, f"'{name}' is shared with other nodes")
    return Consumer(
        node=node.name or node.output[0],
        op=node.op_type,
        output=node.output[0],
        x=x,
        axis=axis,
        weight=weight,
        kept=kept,
        channels=int(w_orig.shape[in_axis]),
        out_keep=None if out_keep is None else np.asarray(out_keep),
        bias=bias,
        bias_add=bias_add,
        scale=scale,
        trans_b=trans_b,
        kernel=tuple(int(k) for k in w_orig.shape[2:]) if node.op_type == "Conv" else (),
        conv=tuple(
            (a.name, onnx.helper.get_attribute_value(a))
            for a in node.attribute
            if a.name in ("pads", "strides", "dilations", "auto_pad")
        ),
    )


def to_w3(consumer: Consumer, w: np.ndarray) -> np.ndarray:
    """A consumer's weight as ``W3[o, c, t]`` (float64)."""
    w = np.asarray(w, dtype=np.float64)
    if consumer.op == "Conv":
        return w.reshape(w.shape[0], w.shape[1], -1)
    if consumer.op == "Gemm" and consumer.trans_b:
        return w[:, :, None]
    return w.T[:, :, None]


def from_w3(consumer: Consumer, w3: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`w3` back in the layout (shape and dtype) of the consumer's weight `like`."""
    if consumer.op == "Conv":
        out = w3.reshape(w3.shape[0], w3.shape[1], *like.shape[2:])
    elif consumer.op == "Gemm" and consumer.trans_b:
        out = w3[:, :, 0]
    else:
        out = w3[:, :, 0].T
    return np.ascontiguousarray(out).astype(like.dtype)


def original_w3(consumer: Consumer, original: onnx.ModelProto) -> np.ndarray:
    """The original weight as ``W3[o, c, t]`` over all C input channels, kept outputs only."""
    w3 = to_w3(consumer, get_weight(original, consumer.weight))
    return w3 if consumer.out_keep is None else w3[consumer.out_keep]


def levels(pruned: onnx.ModelProto, found: list[Consumer]) -> list[list[Consumer]]:
    """`found` grouped by dependency level (nodes of an ONNX graph are in topological order)."""
    by_output = {c.output: c for c in found}
    depth: dict[str, int] = {}
    level_of: dict[str, int] = {}
    for node in pruned.graph.node:
        below = max((depth.get(i, 0) for i in node.input), default=0)
        if node.output and node.output[0] in by_output:
            level_of[node.output[0]] = below
            below += 1
        for out in node.output:
            depth[out] = below
    grouped: dict[int, list[Consumer]] = {}
    for c in found:
        grouped.setdefault(level_of[c.output], []).append(c)
    return [grouped[k] for k in sorted(grouped)]
