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

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.errors import ModelError
from onnxprune.graph import is_default_domain


def _constant_value(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    """The ``value`` attribute of a Constant node of the default domain, if it has one."""
    if node.op_type != "Constant" or not is_default_domain(node.domain) or not node.output:
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
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def tensor_array_dtype(tensor: onnx.TensorProto) -> np.dtype | None:
    """The numpy dtype whose bytes are the tensor's raw data (None for packed or string types)."""
    dtype = _RAW_DTYPES.get(tensor.data_type)
    return None if dtype is None else np.dtype(dtype)


def uses_external_data(tensor: onnx.TensorProto) -> bool:
    """True if the tensor's values live in a file beside the model, not in the proto."""
    return tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL


@dataclass(frozen=True)
class ExternalRef:
    """Where an external tensor's bytes are: a checked, existing file and a byte range in it."""

    path: Path
    offset: int
    length: int


def external_ref(tensor: onnx.TensorProto, base_dir: str | os.PathLike) -> ExternalRef:
    """Resolve and check the external data reference of `tensor` against directory `base_dir`.

    The location must be a relative path below `base_dir` (no absolute paths, no `..`); the file
    must exist and hold the byte range; for fixed-size dtypes the range must be exactly the
    tensor's size. Symbolic links are followed (model caches link files to shared blobs).
    Raises ModelError naming the tensor and the file otherwise.
    """
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    name = tensor.name
    if not location:
        raise ModelError(f"tensor '{name}' is marked external but names no data file")
    relative = PurePosixPath(location.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or PureWindowsPath(location).drive:
        raise ModelError(
            f"tensor '{name}': external data location '{location}' must be a relative path "
            "inside the model's directory"
        )
    path = Path(base_dir, *relative.parts)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(
            f"tensor '{name}': external data file '{location}' not readable ({exc.strerror})"
        ) from exc
    if not path.is_file():
        raise ModelError(f"tensor '{name}': external data location '{location}' is not a file")
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError as exc:
        raise ModelError(f"tensor '{name}': external data offset or length is not a number") from exc
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelError(
            f"tensor '{name}': external data range [{offset}, {offset + length}) is outside "
            f"'{location}' ({size} bytes)"
        )
    dtype = _RAW_DTYPES.get(tensor.data_type)
    if dtype is not None:
        expected = math.prod(tensor.dims) * np.dtype(dtype).itemsize
        if expected != length:
            raise ModelError(
                f"tensor '{name}': external data holds {length} bytes, its shape "
                f"{list(tensor.dims)} needs {expected}"
            )
    return ExternalRef(path, offset, length)


def read_external(ref: ExternalRef) -> bytes:
    """The bytes of an external tensor (an in-memory copy)."""
    with open(ref.path, "rb") as fh:
        fh.seek(ref.offset)
        data = fh.read(ref.length)
    if len(data) != ref.length:
        raise ModelError(f"external data file '{ref.path}' ended early (changed while reading?)")
    return data


def load_external(tensor: onnx.TensorProto, base_dir: str | os.PathLike) -> None:
    """Bring an external tensor's values into the proto (raw_data), so it no longer needs a file."""
    data = read_external(external_ref(tensor, base_dir))
    tensor.raw_data = data
    del data
    tensor.ClearField("data_location")
    del tensor.external_data[:]


def tensor_array(tensor: onnx.TensorProto, base_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The tensor's values; a read-only view of its bytes where possible (no copy).

    A tensor with external data is read from `base_dir` (the model's directory): for
    fixed-size dtypes as a read-only ``numpy.memmap`` of its byte range, so only the pages
    actually used are read, and they are released when the array is dropped.

    >>> tensor_array(numpy_helper.from_array(np.arange(3, dtype=np.float32))).tolist()
    [0.0, 1.0, 2.0]
    """
    dtype = _RAW_DTYPES.get(tensor.data_type)
    shape = tuple(tensor.dims)
    if uses_external_data(tensor):
        if base_dir is None:
            raise ModelError(
                f"tensor '{tensor.name}' keeps its values in an external file, and no directory "
                "to read it from was given"
            )
        ref = external_ref(tensor, base_dir)
        if dtype is not None and np.little_endian:
            if ref.length == 0:
                return np.zeros(shape, dtype=dtype)
            return np.memmap(ref.path, dtype=dtype, mode="r", offset=ref.offset, shape=shape)
        inline = onnx.TensorProto()
        for field, value in tensor.ListFields():
            if field.name not in ("external_data", "data_location", "raw_data"):
                _copy_field(inline, field, value)
        inline.raw_data = read_external(ref)
        return numpy_helper.to_array(inline)
    try:
        if dtype is not None and tensor.HasField("raw_data") and np.little_endian:
            array = np.frombuffer(tensor.raw_data, dtype=dtype).reshape(shape)
        else:
            array = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"tensor '{tensor.name}' ({_type_name(tensor.data_type)}, dims {list(shape)}): its data "
            f"does not fit its type and dims ({exc})"
        ) from exc
    if array.shape != shape:
        raise ModelError(
            f"tensor '{tensor.name}' ({_type_name(tensor.data_type)}, dims {list(shape)}) holds "
            f"{array.size} values, not {math.prod(shape)}"
        )
    return array


def _type_name(data_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(data_type)
    except ValueError:
        return f"data type {data_type}"


def _copy_field(target, field, value) -> None:
    """Copy one field, as listed by ``ListFields()``, from a message into `target`."""
    if _is_repeated(field):
        getattr(target, field.name).extend(value)
    elif field.message_type is not None:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; older versions only have `label`
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED
