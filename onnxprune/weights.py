"""Weight-like tensors: initializers and the ``value`` of Constant nodes, addressed by name.

The plan (shared/DESIGN.md) names every tensor it slices by its name in the input model, whether
it is an initializer or the output of a Constant node. These helpers read and replace such
tensors without caring which of the two it is. Only the main graph is searched: Constant nodes
inside subgraphs (If/Loop bodies) and local functions are not weights of the model here.

>>> import numpy as np, onnx
>>> from onnx import numpy_helper
>>> m = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
>>> m.graph.initializer.extend([numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])
>>> set_weight(m, "w", np.zeros((2, 2), np.float32))
>>> get_weight(m, "w").shape
(2, 2)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _constant_value(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    """The ``value`` attribute of a Constant node of the default domain, if it has one."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or not node.output:
        return None
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            return attr
    return None


def weight_tensors(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Map each weight-like tensor name of the main graph to its TensorProto (no data copied).

    Initializers are keyed by their name, Constant nodes by their output name. The protos are
    the model's own: changing them changes the model.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) { c = Constant <value = float[2] {1.0, 2.0}> ()
    ... y = Add(x, c) }''')
    >>> list(weight_tensors(m))
    ['c']
    """
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        attr = _constant_value(node)
        if attr is not None:
            found[node.output[0]] = attr.t
    return found


def get_weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    """The value of weight-like tensor `name` as a numpy array; raises KeyError if absent.

    The array may be a read-only view of the tensor's bytes: copy it before writing to it.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}> { y = Add(x, b) }''')
    >>> get_weight(m, "b").tolist()
    [1.0, 2.0]
    """
    tensors = weight_tensors(model)
    if name not in tensors:
        raise KeyError(name)
    return numpy_helper.to_array(tensors[name])


def set_weight(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Replace the value of weight-like tensor `name` in place with `array`, keeping its name.

    Works for initializers and Constant-node outputs; the array's dtype and shape become the
    tensor's. A graph input or value_info entry of the same name (old IR versions list
    initializers as inputs) gets the new shape too, so the model stays consistent. Raises
    KeyError if the model has no such weight.

    >>> import numpy as np, onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}> { y = Add(x, b) }''')
    >>> set_weight(m, "b", np.array([3.0, 4.0], np.float32))
    >>> get_weight(m, "b").tolist()
    [3.0, 4.0]
    """
    target: onnx.TensorProto | None = None
    for tensor in model.graph.initializer:
        if tensor.name == name:
            target = tensor
            break
    if target is None:
        for node in model.graph.node:
            attr = _constant_value(node)
            if attr is not None and node.output[0] == name:
                target = attr.t
                break
    if target is None:
        raise KeyError(name)
    keep_name = target.name
    target.CopyFrom(numpy_helper.from_array(np.asarray(array), keep_name))
    _reshape_value_infos(model, name, target)


def _reshape_value_infos(model: onnx.ModelProto, name: str, tensor: onnx.TensorProto) -> None:
    """Give any graph input or value_info named `name` the type and shape of `tensor`."""
    for info in (*model.graph.input, *model.graph.value_info):
        if info.name != name or not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        tensor_type.elem_type = tensor.data_type
        tensor_type.shape.SetInParent()
        tensor_type.shape.ClearField("dim")
        for size in tensor.dims:
            tensor_type.shape.dim.add().dim_value = size


_RAW_DTYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
}


def tensor_array(tensor: onnx.TensorProto) -> np.ndarray:
    """The tensor's values; a read-only view of its raw bytes where possible (no copy).

    >>> tensor_array(numpy_helper.from_array(np.arange(3, dtype=np.float32))).tolist()
    [0.0, 1.0, 2.0]
    """
    dtype = _RAW_DTYPES.get(tensor.data_type)
    if dtype is not None and tensor.HasField("raw_data") and np.little_endian:
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(tuple(tensor.dims))
    return numpy_helper.to_array(tensor)
