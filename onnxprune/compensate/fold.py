"""Folding an affine map into a consumer's kept weights and bias, in place in the pruned model.

With x ≈ M·x' + m, a consumer y = W·x + b becomes y = (W·M)·x' + (b + W·m): per kernel tap,
W'[o, j, t] = Σ_c W[o, c, t]·M[c, j], and b' = b + scale·Σ_c (Σ_t W[o, c, t])·m[c]. For a Conv
whose padding reaches a channel, the folded bias is exact only away from the borders: the
original convolution saw zeros (not the channel's mean) in the padded taps. A consumer without a
bias gets one: a new Conv ``B`` or Gemm ``C`` input, or for a MatMul an ``Add`` inserted after it
(the MatMul then writes a new tensor, and the Add writes the MatMul's old output, so every reader
of it is unchanged). New tensors and nodes get fresh names, and are listed in the updates.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.compensate.consumers import Consumer, from_w3, original_w3
from onnxprune.compensate.solve import AffineMap, identity_map
from onnxprune.graph import fresh_name
from onnxprune.plan import TensorUpdate
from onnxprune.weights import get_weight, set_weight


def _taken(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    names |= {o for n in graph.node for o in n.output} | {n.name for n in graph.node}
    return names | {v.name for v in graph.value_info} | {o.name for o in graph.output}


def _node(model: onnx.ModelProto, output: str) -> tuple[int, onnx.NodeProto]:
    for index, node in enumerate(model.graph.node):
        if node.output and node.output[0] == output:
            return index, node
    raise KeyError(output)


def _new_bias(model: onnx.ModelProto, consumer: Consumer, values: np.ndarray) -> str:
    """Give the consumer a bias tensor holding `values`; returns its (fresh) name."""
    taken = _taken(model)
    name = fresh_name(f"{consumer.weight}_compensate_bias", taken)
    model.graph.initializer.append(numpy_helper.from_array(values, name))
    index, node = _node(model, consumer.output)
    if consumer.op in ("Conv", "Gemm"):
        while len(node.input) < 2:
            node.input.append("")
        if len(node.input) == 2:
            node.input.append(name)
        else:
            node.input[2] = name
        return name
    # MatMul: y = MatMul(x, W) becomes y0 = MatMul(x, W); y = Add(y0, bias)
    out = node.output[0]
    inner = fresh_name(f"{out}_compensate_matmul", taken | {name})
    node.output[0] = inner
    add_name = fresh_name(f"{node.name or out}_compensate_add", taken | {name, inner})
    add = onnx.helper.make_node("Add", [inner, name], [out], name=add_name)
    model.graph.node.insert(index + 1, add)
    return name


def fold(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    consumer: Consumer,
    affine: AffineMap,
    by: str,
    cover: np.ndarray | None = None,
) -> list[TensorUpdate]:
    """Write `affine` into the consumer's weight and bias in `pruned`; the updates it made.

    `cover` is each kernel tap's share of output positions that read inside the input
    (`taps.coverage`; None: all of them), so the bias is the best constant over positions."""
    w3 = original_w3(consumer, original)
    like = get_weight(pruned, consumer.weight)
    updates = []
    if not np.array_equal(affine.M, identity_map(consumer.channels, consumer.kept)):
        new = from_w3(consumer, np.einsum("oct,cj->ojt", w3, affine.M), like)
        set_weight(pruned, consumer.weight, new)
        updates.append(TensorUpdate(consumer.weight, tuple(new.shape), by))
    taps = w3.sum(axis=2) if cover is None else w3 @ cover
    shift = consumer.scale * (taps @ affine.m)
    if not np.any(shift):
        return updates
    if consumer.bias is not None:
        bias = get_weight(pruned, consumer.bias)
        new_bias = (bias.astype(np.float64).reshape(-1) + shift).reshape(bias.shape).astype(bias.dtype)
        set_weight(pruned, consumer.bias, new_bias)
        updates.append(TensorUpdate(consumer.bias, tuple(new_bias.shape), by))
    else:
        name = _new_bias(pruned, consumer, shift.astype(like.dtype))
        updates.append(TensorUpdate(name, (len(shift),), by))
    return updates
