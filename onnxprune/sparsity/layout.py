"""Which weights weight sparsity touches, and along which axis they are reduced.

A weight read as Conv W (any group), Gemm B or MatMul B multiplies an activation; its *reduction
axis* is the one summed against the activation's channels: Conv W ``[O, C/group, k...]`` axis 1,
Gemm B axis 0 (``[K, N]``) or 1 with ``transB`` (``[N, K]``), MatMul B ``[..., K, N]`` axis -2.
N:M sparsity groups M consecutive entries along that axis, for every other index (for a Conv,
every output channel and kernel position: the input-channel groups TensorRT's sparse kernels
read); Wanda scales each entry by the norm of the activation channel it multiplies.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 4] x) => (float[1, 2] y) <float[2, 4] w = {1, 2, 3, 4, 5, 6, 7, 8}>
... { y = Gemm <transB = 1> (x, w) }''')
>>> t = sparsity_targets(m)["w"]
>>> t.op_type, t.axis, t.activation_axis
('Gemm', 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph import is_default_domain
from onnxprune.weights import weight_tensors

SPARSE_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
"""Element types whose weights are sparsified (numpy reads them exactly)."""


@dataclass(frozen=True)
class SparseTarget:
    """Weight `weight` read by node `node` (`op_type`): `axis` is its reduction axis
    (non-negative); `activation` is the tensor it multiplies, whose channels run along
    `activation_axis` (negative: from the end); `groups` is a Conv's group count."""

    node: str
    op_type: str
    weight: str
    axis: int
    activation: str
    activation_axis: int
    groups: int = 1


def _target(node: onnx.NodeProto, rank: int) -> SparseTarget | None:
    """The target a Conv, Gemm or MatMul node makes of its second input (None: none)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x, w = node.input[0], node.input[1]
    if node.op_type == "Conv" and rank >= 3:
        return SparseTarget(node.name, "Conv", w, 1, x, 1, int(attrs.get("group", 1)))
    if node.op_type == "Gemm" and rank == 2:
        axis = 1 if attrs.get("transB", 0) else 0
        return SparseTarget(node.name, "Gemm", w, axis, x, 0 if attrs.get("transA", 0) else 1)
    if node.op_type == "MatMul" and rank >= 2:
        return SparseTarget(node.name, "MatMul", w, rank - 2, x, -1)
    return None


def sparsity_targets(model: onnx.ModelProto) -> dict[str, SparseTarget]:
    """Every float weight of the main graph read as Conv W, Gemm B or MatMul B, in graph order,
    by weight name. A weight read by several nodes keeps its first reader's layout, and is dropped
    when another reader reduces it along a different axis (no single N:M layout fits both)."""
    weights = {name: t for name, t in weight_tensors(model).items() if t.data_type in SPARSE_TYPES and t.dims}
    found: dict[str, SparseTarget] = {}
    conflicting: set[str] = set()
    for node in model.graph.node:
        if not is_default_domain(node.domain) or len(node.input) < 2 or node.input[1] not in weights:
            continue
        target = _target(node, len(weights[node.input[1]].dims))
        if target is None:
            continue
        first = found.setdefault(target.weight, target)
        if first.axis != target.axis or first.op_type != target.op_type:
            conflicting.add(target.weight)
    return {name: t for name, t in found.items() if name not in conflicting}


def reduction_rows(array: np.ndarray, axis: int) -> np.ndarray:
    """`array` as rows of its reduction axis: shape ``(others, K)``, K = ``array.shape[axis]``.

    >>> reduction_rows(np.arange(6).reshape(3, 2), 0).tolist()
    [[0, 2, 4], [1, 3, 5]]
    """
    return np.moveaxis(array, axis, -1).reshape(-1, array.shape[axis])


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """The inverse of `reduction_rows` for an array of `shape`."""
    moved = [d for i, d in enumerate(shape) if i != axis] + [shape[axis]]
    return np.moveaxis(rows.reshape(moved), -1, axis)


def nm_violations(array: np.ndarray, axis: int, n: int, m: int) -> int | None:
    """How many groups of `m` consecutive entries along `axis` hold more than `n` non-zeros
    (None: the axis length is not a multiple of `m`, so there is no N:M layout).

    >>> nm_violations(np.array([[1.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 0.0]]), 1, 2, 4)
    1
    """
    k = array.shape[axis]
    if k % m:
        return None
    groups = reduction_rows(array, axis).reshape(-1, k // m, m)
    return int(np.count_nonzero(np.count_nonzero(groups, axis=-1) > n))
