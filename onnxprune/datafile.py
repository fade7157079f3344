"""The external data file of a model being saved: tensor bytes appended one tensor at a time
(large ones aligned, so runtimes can map them), and the model copied with those tensors
replaced by stubs that point into the file.

`onnxprune.io.save_model` decides when a model is written this way and places the files
atomically; this module only fills them:

>>> writer = DataWriter(fh, "m.onnx.data", base_dir, min_bytes=1024, align_min_bytes=1 << 20,
...                     alignment=1 << 16)  # doctest: +SKIP
>>> copy_stripped(model, header, writer, in_graph=False)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from typing import BinaryIO

import onnx
import onnx.numpy_helper

from onnxprune.errors import ModelError
from onnxprune.weights import (
    ExternalRef,
    _copy_field,
    _is_repeated,
    external_ref,
    tensor_array_dtype,
    uses_external_data,
)

_COPY_CHUNK = 16 << 20  # bytes read at a time where the kernel cannot copy between the files


def _itemsizes() -> dict[int, int]:
    """Bytes per element of every ONNX element type numpy holds (not strings, not packed types)."""
    sizes = {}
    for code in onnx.TensorProto.DataType.values():
        if code in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
            continue
        with contextlib.suppress(KeyError, TypeError, ValueError):  # types numpy cannot hold
            sizes[code] = onnx.helper.tensor_dtype_to_np_dtype(code).itemsize
    return sizes


ITEMSIZE = _itemsizes()  # ONNX element type -> bytes per element


class DataWriter:
    """Appends tensor bytes to the output's data file; returns the stub that points at them."""

    def __init__(
        self,
        fh: BinaryIO,
        name: str,
        base_dir: str | os.PathLike | None,
        *,
        min_bytes: int,
        align_min_bytes: int,
        alignment: int,
    ) -> None:
        self.fh = fh
        self.name = name
        self.base_dir = base_dir
        self.min_bytes = min_bytes
        self.align_min_bytes = align_min_bytes
        self.alignment = alignment
        self.offset = 0

    def stub(self, tensor: onnx.TensorProto, initializer: bool) -> onnx.TensorProto | None:
        """Write `tensor`'s data out if it goes to the data file and return its stub; else None.

        External tensors are always rewritten (streamed from their file); in-memory ones when
        they are initializers with at least `min_bytes` of raw data.
        """
        if uses_external_data(tensor):
            ref = external_ref(tensor, self.base_dir)
            start = self._align(ref.length)
            self._copy(ref)
        elif initializer and tensor.HasField("raw_data") and _raw_size(tensor) >= self.min_bytes:
            data = tensor.raw_data
            start = self._align(len(data))
            self._write(data)
            del data
        elif initializer and _typed_size(tensor) >= self.min_bytes:  # float_data, int64_data, ...
            array = onnx.numpy_helper.to_array(tensor)
            data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()  # external: LE
            start = self._align(len(data))
            self._write(data)
            del data
        else:
            return None
        stub = onnx.TensorProto()
        for fd, value in tensor.ListFields():
            if fd.name not in ("raw_data", "external_data", "data_location", *_TYPED_DATA_FIELDS):
                _copy_field(stub, fd, value)
        stub.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.name), ("offset", start), ("length", self.offset - start)):
            entry = stub.external_data.add()
            entry.key, entry.value = key, str(value)
        return stub

    def _align(self, size: int) -> int:
        if size >= self.align_min_bytes and self.offset % self.alignment:
            self._write(b"\0" * (self.alignment - self.offset % self.alignment))
        return self.offset

    def _write(self, data) -> None:
        view = memoryview(data)
        while view:
            written = self.fh.write(view)
            view = view[written:]
            self.offset += written

    def _copy(self, ref: ExternalRef) -> None:
        """Stream a byte range of an input data file into the data file (in the kernel where it can)."""
        with open(ref.path, "rb") as src:
            remaining, position = ref.length, ref.offset
            kernel = hasattr(os, "copy_file_range")
            while remaining:
                n = self._kernel_copy(src, remaining, position) if kernel else None
                if n is None:
                    kernel = False
                    src.seek(position)
                    chunk = src.read(min(remaining, _COPY_CHUNK))
                    self._write(chunk)
                    n = len(chunk)
                else:
                    self.offset += n
                if n == 0:
                    raise ModelError(f"external data file '{ref.path}' ended early (changed while saving?)")
                remaining -= n
                position += n

    def _kernel_copy(self, src: BinaryIO, count: int, position: int) -> int | None:
        """Bytes copied by copy_file_range, or None where the file systems do not support it."""
        try:
            return os.copy_file_range(src.fileno(), self.fh.fileno(), min(count, 1 << 30), position)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                return None
            raise


# Message types that can hold tensors somewhere below them: walked field by field when
# saving with external data; every other field is copied as it is.
_WALKED = frozenset(
    d.full_name
    for d in (
        onnx.ModelProto.DESCRIPTOR,
        onnx.GraphProto.DESCRIPTOR,
        onnx.NodeProto.DESCRIPTOR,
        onnx.AttributeProto.DESCRIPTOR,
        onnx.FunctionProto.DESCRIPTOR,
        onnx.TrainingInfoProto.DESCRIPTOR,
        onnx.SparseTensorProto.DESCRIPTOR,
    )
)
_TENSOR = onnx.TensorProto.DESCRIPTOR.full_name
_HOLDS_TENSORS = frozenset(
    {
        onnx.AttributeProto.TENSOR,
        onnx.AttributeProto.TENSORS,
        onnx.AttributeProto.GRAPH,
        onnx.AttributeProto.GRAPHS,
        onnx.AttributeProto.SPARSE_TENSOR,
        onnx.AttributeProto.SPARSE_TENSORS,
    }
)


def copy_stripped(src, dst, writer: DataWriter, *, in_graph: bool) -> None:
    """Copy message `src` into `dst`, initializers replaced by stubs into the data file.

    Large data is never copied into `dst`: it goes from `src` (or the input's data file) to
    the data file, one tensor at a time.
    """
    for fd, value in src.ListFields():
        kind = fd.message_type.full_name if fd.message_type is not None else None
        if kind is None or (kind not in _WALKED and kind != _TENSOR):
            _copy_field(dst, fd, value)
            continue
        repeated = _is_repeated(fd)
        for item in value if repeated else [value]:
            out = getattr(dst, fd.name).add() if repeated else getattr(dst, fd.name)
            if kind == _TENSOR:
                stub = writer.stub(item, initializer=in_graph and fd.name == "initializer")
                out.CopyFrom(stub if stub is not None else item)
            elif kind == onnx.NodeProto.DESCRIPTOR.full_name and not _node_holds_tensors(item):
                out.CopyFrom(item)
            else:
                copy_stripped(item, out, writer, in_graph=kind == onnx.GraphProto.DESCRIPTOR.full_name)


_TYPED_DATA_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
# element types whose external bytes are exactly their numpy values' bytes (no packing, no strings)
_PLAIN_ELEMENT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    }
)


def _typed_size(tensor: onnx.TensorProto) -> int:
    """Bytes a tensor held in its typed fields (float_data, ...) takes raw; 0 if it has none or
    its element type is packed or a string."""
    if tensor.data_type not in _PLAIN_ELEMENT_TYPES or not any(
        len(getattr(tensor, name)) for name in _TYPED_DATA_FIELDS
    ):
        return 0
    return math.prod(tensor.dims) * ITEMSIZE[tensor.data_type]


def _raw_size(tensor: onnx.TensorProto) -> int:
    """Bytes of `tensor`'s raw data, without copying them out of the proto."""
    dtype = tensor_array_dtype(tensor)
    if dtype is not None:
        return math.prod(tensor.dims) * dtype.itemsize
    return tensor.ByteSize()  # packed or unusual types: the data dominates the message


def _node_holds_tensors(node: onnx.NodeProto) -> bool:
    return any(attr.type in _HOLDS_TENSORS for attr in node.attribute)
