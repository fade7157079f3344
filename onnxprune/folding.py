"""Constant folding for shape arithmetic: Constant nodes to initializers, and Shape / Gather /
small integer ops on static dims to constants, so Reshape targets and Slice bounds become
constants the op rules can read and the rewriters can edit (the normalization passes and the
MAC counts both use it).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.graph import is_default_domain, static_dims

_FOLDABLE = {
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Cast",
    "Slice",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Identity",
    "Reshape",
    "Equal",
    "Where",
    "Floor",
    "Ceil",
    "Max",
    "Min",
    "Neg",
    "Abs",
    "ConstantOfShape",
    "Range",
    "Expand",
    "Mod",
    "ReduceProd",
    "Transpose",
}
_MAX_FOLDED = 1024  # elements: shape arithmetic, never weights


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Constant nodes become initializers of the same name (weights in Constant nodes included);
    returns how many moved."""
    graph = model.graph
    keep, moved = [], 0
    for node in graph.node:
        if node.op_type == "Constant" and is_default_domain(node.domain) and len(node.attribute) == 1:
            tensor = _constant_value(node)
            if tensor is not None:
                tensor.name = node.output[0]
                graph.initializer.append(tensor)
                moved += 1
                continue
        keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    attr = node.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        out = onnx.TensorProto()
        out.CopyFrom(value)
        return out
    dtype = {
        "value_float": np.float32,
        "value_int": np.int64,
        "value_floats": np.float32,
        "value_ints": np.int64,
    }.get(attr.name)
    if dtype is None:
        return None
    return numpy_helper.from_array(np.asarray(value, dtype=dtype))


def fold_shapes(model: onnx.ModelProto) -> int:
    """Fold shape arithmetic on static dimensions into constants (see FoldShapes in
    `onnxprune.passes`); returns how many nodes were folded.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2, 3] x) => (float[3, 2] y) { s = Shape(x)  y = Reshape(x, s) }''')
    >>> fold_shapes(m), [t.name for t in m.graph.initializer]
    (1, ['s'])
    """
    from onnx.reference import ReferenceEvaluator  # slow to import, and only folding needs it

    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    shapes = _shapes(model)
    folded = 0
    shape_reads: dict[str, list[int | None] | None] = {}
    nodes = list(graph.node)
    remaining = []
    for node in nodes:
        value = None
        if not is_default_domain(node.domain):
            remaining.append(node)
            continue
        if node.op_type == "Shape":
            value = _static_shape_value(node, shapes)
            if value is None:
                shape_reads[node.output[0]] = _shape_slice(node, shapes)
        elif node.op_type == "Gather" and node.input[0] in shape_reads and node.input[1] in consts:
            value = _gather_static_dims(shape_reads[node.input[0]], consts[node.input[1]])
        elif node.op_type in _FOLDABLE and node.input and all((not i) or i in consts for i in node.input):
            value = _evaluate(ReferenceEvaluator, node, consts, model)
        if value is None or len(node.output) != 1:
            remaining.append(node)
            continue
        tensor = numpy_helper.from_array(value, node.output[0])
        graph.initializer.append(tensor)
        consts[node.output[0]] = tensor
        folded += 1
    if folded:
        del graph.node[:]
        graph.node.extend(remaining)
    return folded


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    graph = model.graph
    out = {t.name: [int(d) for d in t.dims] for t in graph.initializer}  # Shape of a weight (tf2onnx)
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = static_dims(vi)
        if dims is not None:
            out[vi.name] = dims
    return out


def _static_shape_value(node: onnx.NodeProto, shapes) -> np.ndarray | None:
    dims = _shape_slice(node, shapes)
    if dims is None or any(d is None for d in dims):
        return None
    return np.asarray(dims, dtype=np.int64)


def _gather_static_dims(dims: list[int | None] | None, indices: onnx.TensorProto) -> np.ndarray | None:
    """Gather(Shape(x), i) where the dims read are static, even if other dims of x are not."""
    if dims is None:
        return None
    idx = numpy_helper.to_array(indices)
    if idx.size > _MAX_FOLDED or idx.dtype.kind not in "iu":
        return None
    flat = [int(i) + len(dims) if int(i) < 0 else int(i) for i in idx.reshape(-1)]
    if any(not 0 <= i < len(dims) or dims[i] is None for i in flat):
        return None
    return np.asarray([dims[i] for i in flat], dtype=np.int64).reshape(idx.shape)


def _shape_slice(node: onnx.NodeProto, shapes) -> list[int | None] | None:
    shape = shapes.get(node.input[0])
    if shape is None:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start = max(0, start + rank if start < 0 else start)
    end = min(rank, end + rank if end < 0 else end)
    return shape[start:end]


def _evaluate(evaluator_cls, node, consts, model) -> np.ndarray | None:
    feeds = {}
    for name in node.input:
        if name:
            t = consts[name]
            if math.prod(t.dims) > _MAX_FOLDED:
                return None
            feeds[name] = numpy_helper.to_array(t)
    try:
        result = evaluator_cls(_single_node_model(node, model)).run(None, feeds)[0]
    except Exception:  # not foldable: leave the node as it is
        return None
    result = np.asarray(result)
    if result.size > _MAX_FOLDED or result.dtype.kind not in "iub":
        return None
    return result


def _single_node_model(node: onnx.NodeProto, model: onnx.ModelProto) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(i, onnx.TensorProto.UNDEFINED, None) for i in node.input if i]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
