"""Loading and saving models: paths, bytes or ModelProto in; atomic writes out.

The input model's IR version, opsets, producer and metadata are kept on save (ONNX
Runtime refuses IR versions newer than it knows, and apps read labels from metadata).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from onnxprune.errors import ModelError, UsageError

ModelLike = str | os.PathLike | bytes | onnx.ModelProto

_TWO_GB = 2**31 - 1


def load_model(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    """Load a model from a path, bytes or a ModelProto; return it and a display name.

    A ModelProto is copied, so the caller's object is never modified.

    >>> m, name = load_model("models/default.onnx")  # doctest: +SKIP
    """
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy, "<ModelProto>"
    if isinstance(model, bytes | bytearray):
        return _parse(bytes(model), "<bytes>"), "<bytes>"
    path = Path(model)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected an .onnx file")
    data = path.read_bytes()
    if not data:
        raise ModelError("empty file, not an ONNX model", path=str(path))
    proto = _parse(data, str(path))
    if any(_uses_external_data(t) for t in proto.graph.initializer):
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:  # onnx raises OSError, ValueError or its own ValidationError here
            raise ModelError(f"external data could not be read: {exc}", path=str(path)) from exc
    return proto, str(path)


def _uses_external_data(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def _parse(data: bytes, name: str) -> onnx.ModelProto:
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
    model: onnx.ModelProto, path: str | os.PathLike, *, source: str | None = None, force: bool = False
) -> Path:
    """Write `model` to `path` atomically (temp file in the same directory, then rename).

    Refuses to write over `source` (the input model's path) unless `force` is true.
    Models over 2 GB are written with their tensors in one external data file beside it.
    """
    target = Path(path)
    if source is not None and not force and _same_file(target, Path(source)):
        raise UsageError(f"{target}: output path is the input model; pass --force to overwrite it")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{target}: directory {parent} is not writable")
    if target.is_dir():
        raise UsageError(f"{target}: is a directory, expected an output file path")
    large = model.ByteSize() > _TWO_GB if _fits_bytesize(model) else True
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write in {parent} ({exc.strerror})") from exc
    os.close(fd)
    try:
        if large:
            data_name = f"{target.name}.data"
            onnx.save_model(
                model,
                tmp,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
        else:
            with open(tmp, "wb") as fh:
                fh.write(model.SerializeToString())
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise UsageError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        _remove(tmp)
        raise
    return target


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _fits_bytesize(model: onnx.ModelProto) -> bool:
    try:
        model.ByteSize()
    except (ValueError, RuntimeError):
        return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
