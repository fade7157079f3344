"""Loading and saving models: paths, bytes or ModelProto in; atomic writes out.

The input model's IR version, opsets, producer and metadata are kept on save (ONNX
Runtime refuses IR versions newer than it knows, and apps read labels from metadata).

External data (models over 2 GB keep their tensors in files beside the ``.onnx``): with
``read_model(path, lazy=True)`` the large initializers stay references into the input's data
file, checked but not read, so a 3 GB model costs a few MB to load; their values are read on
demand (`onnxprune.weights.tensor_array` maps them with ``numpy.memmap``) and `save_model`
streams the ones still referenced from the input's file to the output's data file. Writes are
atomic: the data file and the model are written under temporary names in the output's
directory, then renamed, data first, so a complete model never points at incomplete data; on
any failure nothing is left behind. Like ``onnx.save``, they are not forced to disk (no
fsync, a large part of the time to save a small model), so these guarantees hold for the
running system and for a crash of this process, not for a power loss: after one, a new output
may be empty or point at data that was never written (ext4, by default, does write a file
renamed over an existing one before it commits the rename).

This module decides how a model is written and places the files; the data file itself (tensor
bytes, aligned, and the stubs that point at them) is filled by `onnxprune.datafile`.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import onnx
import onnx.numpy_helper
from google.protobuf.message import DecodeError

from onnxprune.datafile import ITEMSIZE, DataWriter, copy_stripped
from onnxprune.errors import ModelError, UsageError
from onnxprune.graph import PLAIN_ATTRIBUTES as _PLAIN_ATTRIBUTES
from onnxprune.weights import (
    ExternalRef,
    external_ref,
    load_external,
    uses_external_data,
)

ModelLike = str | os.PathLike | bytes | onnx.ModelProto

_TWO_GB = 2**31 - 1

# External initializers of at least LAZY_MIN_BYTES stay on disk when a model is read lazily;
# smaller ones (biases, shape constants) are read at once. Tensors of at most LAZY_MIN_ELEMENTS
# elements are always read: passes look at the values of tensors that small (shape inference,
# shape folding), never at larger ones.
LAZY_MIN_BYTES = 1 << 20
LAZY_MIN_ELEMENTS = 4096

# When writing external data: initializers with at least this many bytes go to the data file
# (onnx's default), and those of ALIGN_MIN_BYTES or more start at a multiple of ALIGNMENT, so
# runtimes can map them straight from the file (64 KiB is Windows' mapping granularity).
EXTERNAL_MIN_BYTES = 1024
ALIGN_MIN_BYTES = 1 << 20
ALIGNMENT = 1 << 16


@dataclass
class LoadedModel:
    """A model read by `read_model`, with what is needed to read and write its external data.

    `base_dir` is the directory the model's remaining external references resolve against
    (None when every tensor is in memory); `data_files` are the input's external data files,
    which a save must never write over.
    """

    model: onnx.ModelProto
    name: str
    path: Path | None = None
    base_dir: str | None = None
    data_files: frozenset[Path] = field(default_factory=frozenset)

    @property
    def external(self) -> bool:
        """True if the input kept tensors in external data files."""
        return bool(self.data_files)


def load_model(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    """Load a model from a path, bytes or a ModelProto; return it and a display name.

    A ModelProto is copied, so the caller's object is never modified. External data is read
    into the returned proto.

    >>> m, name = load_model("models/default.onnx")  # doctest: +SKIP
    """
    loaded = read_model(model)
    return loaded.model, loaded.name


def read_model(model: ModelLike, *, lazy: bool = False) -> LoadedModel:
    """Load a model (see `load_model`); with `lazy`, large external initializers stay on disk.

    Lazily kept tensors (main-graph initializers of LAZY_MIN_BYTES or more) are checked (file,
    byte range, size) but not read; `LoadedModel.base_dir` is where they resolve from. Every
    other external tensor is read into memory.
    """
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return LoadedModel(copy, "<ModelProto>")
    if isinstance(model, bytes | bytearray):
        return LoadedModel(_parse(bytes(model), "<bytes>"), "<bytes>")
    path = Path(model)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected an .onnx file")
    proto = _parse_file(path)
    base_dir = str(path.parent)
    kept, read = _resolve_external(proto, base_dir, lazy=lazy, name=str(path))
    files = frozenset(_resolved(ref.path) for ref in kept.values()) | read
    return LoadedModel(proto, str(path), path, base_dir if kept else None, files)


def _resolve_external(
    proto: onnx.ModelProto, base_dir: str, *, lazy: bool, name: str
) -> tuple[dict[str, ExternalRef], frozenset[Path]]:
    """Read external tensors into memory, except (with `lazy`) large main-graph initializers.

    Every reference is checked. Returns the references kept on disk, by tensor name, and the
    data files the tensors read into memory came from.
    """
    kept: dict[str, ExternalRef] = {}
    read: set[Path] = set()
    try:
        for tensor in proto.graph.initializer:
            if uses_external_data(tensor):
                ref = external_ref(tensor, base_dir)
                if lazy and ref.length >= LAZY_MIN_BYTES and math.prod(tensor.dims) > LAZY_MIN_ELEMENTS:
                    kept[tensor.name] = ref
                else:
                    read.add(_resolved(ref.path))
                    load_external(tensor, base_dir)
        for tensor in iter_tensors(proto, main_initializers=False):
            if uses_external_data(tensor):
                read.add(_resolved(external_ref(tensor, base_dir).path))
                load_external(tensor, base_dir)
    except (ModelError, OSError) as exc:
        raise ModelError(f"external data could not be read: {exc}", path=name) from exc
    return kept, frozenset(read)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def iter_tensors(model: onnx.ModelProto, *, main_initializers: bool = True) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of the model: initializers and tensor attributes, in subgraphs and
    local functions too (sparse tensors' values and indices included)."""
    yield from _graph_tensors(model.graph, initializers=main_initializers)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto, *, initializers: bool = True) -> Iterator[onnx.TensorProto]:
    if initializers:
        yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.type in _PLAIN_ATTRIBUTES:  # typed as holding no tensor or graph (UNDEFINED: look)
            continue
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from _graph_tensors(graph)


def materialize(model: onnx.ModelProto, base_dir: str | os.PathLike) -> None:
    """Read every external tensor of `model` (resolved against `base_dir`) into memory, in place."""
    try:
        for tensor in iter_tensors(model):
            if uses_external_data(tensor):
                load_external(tensor, base_dir)
    except (ModelError, OSError) as exc:
        raise ModelError(f"external data could not be read: {exc}", path=str(base_dir)) from exc


def has_external_data(model: onnx.ModelProto) -> bool:
    """True if any tensor of `model` refers to an external data file."""
    return any(uses_external_data(t) for t in iter_tensors(model))


def _parse_file(path: Path) -> onnx.ModelProto:
    """Parse the model file through a read-only memory map: no copy of the whole file in memory
    next to the parsed model (the parse copies what it keeps), and no fresh pages to fill."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ModelError("empty file, not an ONNX model", path=str(path))
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return _parse(view, str(path))
            finally:
                view.release()


def _parse(data: bytes | memoryview, name: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"not an ONNX model (protobuf parse failed: {exc})", path=name) from exc
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise ModelError("not an ONNX model (no graph)", path=name)
    if not proto.opset_import:
        raise ModelError("not an ONNX model (no opset_import)", path=name)
    return proto


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    source: str | None = None,
    force: bool = False,
    base_dir: str | os.PathLike | None = None,
    external: bool = False,
    protect: Iterable[str | os.PathLike] = (),
    max_inline_bytes: int = _TWO_GB,
) -> Path:
    """Write `model` to `path` atomically (temp files in the same directory, then rename).

    Refuses to write over `source` (the input model's path) unless `force` is true, and never
    writes over a file in `protect` (the input's external data files), with or without it.
    The model is written with its initializers in one external data file beside it, named
    ``<output name>.data`` (``<output name>.<n>.data`` if that is a protected file), when
    `external` is true, when it still refers to external data (resolved against `base_dir`
    and streamed from there, never loaded whole), or when it would be over `max_inline_bytes`
    (2 GB, the protobuf limit) in one file. `model` itself is not modified.
    """
    target = Path(path)
    if source is not None and not force and _same_file(target, Path(source)):
        raise UsageError(f"{target}: output path is the input model; pass --force to overwrite it")
    protected = [Path(p) for p in protect]
    if any(_same_file(target, p) for p in protected):
        raise UsageError(f"{target}: output path is an external data file of the input model")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{target}: directory {parent} is not writable")
    if target.is_dir():
        raise UsageError(f"{target}: is a directory, expected an output file path")
    refers = has_external_data(model)
    if refers and base_dir is None:
        raise ModelError(
            "the model refers to external data, and no directory to read it from was given", path=str(target)
        )
    inline = None if external or refers else _serialize_within(model, max_inline_bytes)
    if inline is None:
        _write_split(model, target, parent, base_dir, protected)
    else:
        _write_inline(inline, target, parent)
    return target


def _serialize_within(model: onnx.ModelProto, limit: int) -> bytes | None:
    """`model` serialized, if that takes at most `limit` bytes; else None. A model whose weights
    alone come near the limit is measured first (ByteSize), never serialized whole for nothing."""
    if _initializer_bytes(model) > limit // 2 and not _fits(model, limit):
        return None
    try:
        data = model.SerializeToString()
    except (ValueError, RuntimeError, OverflowError):
        return None
    return data if len(data) <= limit else None


def _initializer_bytes(model: onnx.ModelProto) -> int:
    """About the bytes the initializers take serialized (dims x element size; string tensors
    measured), without serializing them."""
    total = 0
    for tensor in model.graph.initializer:
        itemsize = ITEMSIZE.get(tensor.data_type)
        total += tensor.ByteSize() if itemsize is None else math.prod(tensor.dims) * itemsize
    return total


def _write_inline(data: bytes, target: Path, parent: Path) -> None:
    tmp, fh = _create_temp(parent, target.name)
    try:
        with fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        _remove(tmp)
        _raise_write_error(target, exc)
        raise


def _write_split(model: onnx.ModelProto, target: Path, parent: Path, base_dir, protected: list[Path]) -> None:
    """The data file first (temp name, renamed), then the model that points into it."""
    data_name = _data_name(target, parent, protected)
    data_path = parent / data_name
    data_tmp, data_fh = _create_temp(parent, data_name)
    temps = [data_tmp]
    placed: Path | None = None  # a data file this save created, removed again if the model fails
    try:
        with data_fh:
            writer = DataWriter(
                data_fh,
                data_name,
                base_dir,
                min_bytes=EXTERNAL_MIN_BYTES,
                align_min_bytes=ALIGN_MIN_BYTES,
                alignment=ALIGNMENT,
            )
            header = onnx.ModelProto()
            copy_stripped(model, header, writer, in_graph=False)
        if not _fits(header, _TWO_GB):
            raise ModelError(
                "the model is over 2 GB even with its initializers in an external file "
                "(large tensors in node attributes?)",
                path=str(target),
            )
        model_tmp, fh = _create_temp(parent, target.name)
        temps.append(model_tmp)
        with fh:
            fh.write(header.SerializeToString())
        del header
        if writer.offset:
            placed = None if data_path.exists() else data_path
            os.replace(data_tmp, data_path)
        else:  # nothing large enough to go external: the model stands alone
            _remove(data_tmp)
        os.replace(model_tmp, target)
    except BaseException as exc:
        for tmp in temps:
            _remove(tmp)
        if placed is not None:
            _remove(placed)
        _raise_write_error(target, exc)
        raise


def _raise_write_error(target: Path, exc: BaseException) -> None:
    """An OSError while writing becomes a one-line UsageError naming the output."""
    if isinstance(exc, OSError):
        raise UsageError(f"{target}: cannot write ({exc.strerror or exc})") from exc


def _data_name(target: Path, parent: Path, protected: list[Path]) -> str:
    """``<target name>.data``, or ``<target name>.<n>.data`` if that is an input's data file."""
    name, n = f"{target.name}.data", 0
    while any(_same_file(parent / name, p) for p in protected):
        n += 1
        name = f"{target.name}.{n}.data"
    return name


def _create_temp(parent: Path, name: str) -> tuple[Path, BinaryIO]:
    """A new, empty file ``.<name>.<random>.tmp`` in `parent` (mode from the umask, like any
    file the user creates), opened unbuffered for writing."""
    for _ in range(100):
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"{parent / name}: cannot write in {parent} ({exc.strerror})") from exc
        return tmp, os.fdopen(fd, "wb", buffering=0)
    raise UsageError(f"{parent / name}: cannot create a temporary file in {parent}")


def _fits(model: onnx.ModelProto, limit: int) -> bool:
    """True if `model` serializes to at most `limit` bytes (False if protobuf cannot even say)."""
    try:
        return model.ByteSize() <= limit
    except (ValueError, RuntimeError, OverflowError):
        return False


def _remove(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


__all__ = [
    "LAZY_MIN_BYTES",
    "LoadedModel",
    "ModelLike",
    "has_external_data",
    "iter_tensors",
    "load_model",
    "materialize",
    "read_model",
    "save_model",
]
