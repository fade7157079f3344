"""Shape inference: ONNX's inference on a weightless skeleton of the model, with the dims it
leaves open filled from ONNX Runtime's symbolic inference (the InferShapes pass and the MAC
counts both use it).

Normalization asks for inference many times, mostly on a graph that has not changed since the
last time. Calls that share a `ShapeMemo` (one per pruning run) remember results by a digest of
everything inference reads (nodes, inputs, outputs, initializer types and small initializer
values, the Reshape shapes kept as hints), so an unchanged graph is inferred once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import onnx

from onnxprune.errors import ModelError

_RESOLVED_OPS = ("Reshape", "Expand")


def _resolved_hints(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """value_info entries of Reshape/Expand outputs: shapes ResolveReshapeShapes worked out."""
    produced = {o for n in model.graph.node if n.op_type in _RESOLVED_OPS for o in n.output}
    return [vi for vi in model.graph.value_info if vi.name in produced]


def _same_protos(a, b) -> bool:
    if len(a) != len(b):
        return False
    return all(x.SerializeToString() == y.SerializeToString() for x, y in zip(a, b, strict=True))


@dataclass
class _Inferred:
    onnx_only: onnx.ModelProto  # ONNX's inference
    open_dims: bool | None = None  # whether it left dims open (only then is the symbolic one run)
    symbolic: onnx.ModelProto | None = None  # ONNX's inference completed by the symbolic one


class ShapeMemo:
    """The last few inference results, keyed by a digest of the skeleton they were run on.
    Share one between the InferShapes passes of one run; it holds skeletons (graphs without
    their large weights), at most `capacity` of them (with 0, none: nothing is digested)."""

    def __init__(self, capacity: int = 4) -> None:
        self._entries: OrderedDict[bytes, _Inferred] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def inferred(
        self, model: onnx.ModelProto, hints: list[onnx.ValueInfoProto], symbolic: bool
    ) -> onnx.ModelProto:
        pieces = _Pieces.of(model, hints)
        key = pieces.digest() if self._capacity else None
        entry = None
        if key is not None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
        if entry is None:
            entry = _Inferred(_infer_onnx(pieces.serialized()))
            if key is not None:
                with self._lock:
                    self._entries[key] = entry
                    while len(self._entries) > self._capacity:
                        self._entries.popitem(last=False)
        if symbolic and entry.open_dims is None:
            entry.open_dims = _has_open_dims(entry.onnx_only)
        if not symbolic or not entry.open_dims:
            return entry.onnx_only
        if entry.symbolic is None:
            skeleton = onnx.ModelProto.FromString(pieces.serialized())
            entry.symbolic = _complete(entry.onnx_only, _symbolic(skeleton))
        return entry.symbolic


def _infer_onnx(model: onnx.ModelProto | bytes) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise ModelError(f"shape inference failed: {exc}") from exc


def _complete(inferred: onnx.ModelProto, symbolic: onnx.ModelProto | None) -> onnx.ModelProto:
    """ONNX's inference with the dims it leaves open filled from ONNX Runtime's symbolic shape
    inference, which knows that `Reshape(q, [Shape(x)[0], Shape(x)[1], -1, 64])` keeps x's
    batch and sequence. Static sizes always come from ONNX's inference where it has them (it
    follows the spec; the symbolic one is a helper that is sometimes wrong, e.g. Split-18)."""
    if symbolic is None:
        return inferred
    completed = onnx.ModelProto()
    completed.CopyFrom(inferred)
    found = {vi.name: vi for vi in [*symbolic.graph.value_info, *symbolic.graph.output]}
    known = set()
    for vi in [*completed.graph.value_info, *completed.graph.output]:
        known.add(vi.name)
        other = found.get(vi.name)
        if other is None or not _has_shape(other):
            continue
        if not _has_shape(vi):  # ONNX's inference stopped (a contrib op before it): take the shape
            vi.type.tensor_type.shape.CopyFrom(other.type.tensor_type.shape)
            continue
        dims, extra = vi.type.tensor_type.shape.dim, other.type.tensor_type.shape.dim
        if len(dims) != len(extra):
            continue
        for dim, hint in zip(dims, extra, strict=True):
            if not dim.HasField("dim_value") and (hint.HasField("dim_value") or hint.dim_param):
                dim.CopyFrom(hint)
    graph_names = {vi.name for vi in completed.graph.input} | {t.name for t in completed.graph.initializer}
    completed.graph.value_info.extend(
        vi for vi in symbolic.graph.value_info if vi.name not in known and vi.name not in graph_names
    )
    return completed


def _has_open_dims(model: onnx.ModelProto) -> bool:
    """Whether ONNX's inference left a node output without a shape or with an unnamed or
    generated (`unk__N`) dim: only then is the (slower to load) symbolic inference worth running."""
    infos = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output]}
    for node in model.graph.node:
        for out in node.output:
            vi = infos.get(out)
            if out and (vi is None or not _has_shape(vi)):
                return True
            if out and any(
                not d.HasField("dim_value") and (not d.dim_param or d.dim_param.startswith("unk__"))
                for d in vi.type.tensor_type.shape.dim
            ):
                return True
    return False


def _static_dims(vi: onnx.ValueInfoProto) -> int:
    """Number of static dims of a declared type (-1 when it has no shape at all)."""
    if not _has_shape(vi):
        return -1
    return sum(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim)


def _has_shape(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")


def _symbolic(model: onnx.ModelProto) -> onnx.ModelProto | None:
    # SymbolicShapeInference.infer_shapes() writes a file into the working directory when some
    # shape stays open; drive its steps directly instead and keep the partial result
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            engine = SymbolicShapeInference(2**31 - 1, True, False, 0)
            engine._preprocess(model)
            while engine.run_:
                engine._infer_impl()
            engine._update_output_from_vi()
            return engine.out_mp_
    except Exception:  # any failure (or another onnxruntime version): ONNX's inference alone
        return None


# Initializers that keep their data in the skeleton: integer ones up to this many elements (shape
# constants, axes, indices), and any up to _SKELETON_KEEP_ANY (Resize scales, Range bounds); other
# weights never decide a shape, so only their type and dims are kept.
_SKELETON_KEEP_INT = 4096
_SKELETON_KEEP_ANY = 64
_INT_TYPES = frozenset(
    {
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.BOOL,
    }
)


@dataclass
class _Pieces:
    """What inference reads of a model, serialized piece by piece: enough to tell two graphs
    apart (`digest`) and to write the skeleton (`serialized`) without copying the model. The
    skeleton is the model without value_info (but the hints) whose large initializers are
    typed graph inputs."""

    head: bytes  # ir_version, opset imports and functions, field-encoded
    parts: list[tuple[int, bytes]]  # (GraphProto field, serialized message), in skeleton order
    typed: list[tuple[str, int, tuple[int, ...]]]  # large initializers: name, type, dims
    name: str

    @classmethod
    def of(cls, model: onnx.ModelProto, hints: list[onnx.ValueInfoProto]) -> _Pieces:
        src = model.graph
        head = [_varint(_MODEL["ir_version"] << 3) + _varint(model.ir_version)]
        head += [_field(_MODEL["opset_import"], op.SerializeToString()) for op in model.opset_import]
        head += [_field(_MODEL["functions"], fn.SerializeToString()) for fn in model.functions]
        declared = {vi.name for vi in src.input}
        parts = [(_GRAPH["node"], node.SerializeToString()) for node in src.node]
        parts += [(_GRAPH["input"], vi.SerializeToString()) for vi in src.input]
        typed = []
        for tensor in src.initializer:
            if _keeps_data(tensor):
                parts.append((_GRAPH["initializer"], tensor.SerializeToString()))
            elif tensor.name not in declared:
                typed.append((tensor.name, tensor.data_type, tuple(tensor.dims)))
        parts += [(_GRAPH["output"], vi.SerializeToString()) for vi in src.output]
        parts += [(_GRAPH["sparse_initializer"], t.SerializeToString()) for t in src.sparse_initializer]
        parts += [(_GRAPH["value_info"], vi.SerializeToString()) for vi in hints]
        return cls(b"".join(head), parts, typed, src.name)

    def digest(self) -> bytes:
        """Equal for equal skeletons; every piece is length-prefixed, so no two differ in it."""
        h = hashlib.blake2b(repr((self.name, [(f, len(b)) for f, b in self.parts], self.typed)).encode())
        h.update(self.head)
        h.update(b"".join(payload for _, payload in self.parts))
        return h.digest()

    def serialized(self) -> bytes:
        """The skeleton ModelProto, serialized (large initializers declared as typed inputs)."""
        graph = [_field(_GRAPH["name"], self.name.encode())]
        graph += [_field(number, payload) for number, payload in self.parts]
        graph += [_field(_GRAPH["input"], _typed_value_info(*typed)) for typed in self.typed]
        return self.head + _field(_MODEL["graph"], b"".join(graph))


_MODEL = {f.name: f.number for f in onnx.ModelProto.DESCRIPTOR.fields}
_GRAPH = {f.name: f.number for f in onnx.GraphProto.DESCRIPTOR.fields}


def _typed_value_info(name: str, data_type: int, dims: tuple[int, ...]) -> bytes:
    """A serialized ValueInfoProto for a tensor of `data_type` and static `dims`, as
    ``helper.make_tensor_value_info(name, data_type, dims).SerializeToString()`` gives it (field
    numbers: ValueInfoProto name 1, type 2; TypeProto tensor_type 1; Tensor elem_type 1, shape 2;
    TensorShapeProto dim 1; Dimension dim_value 1)."""
    shape = b"".join(map(_dim_field, dims))
    tensor = _varint(1 << 3) + _varint(data_type) + _field(2, shape)
    return _field(1, name.encode()) + _field(2, _field(1, tensor))


@functools.lru_cache(maxsize=4096)
def _dim_field(size: int) -> bytes:
    """A TensorShapeProto's dim field holding dim_value `size` (weights repeat a few sizes)."""
    return _field(1, _varint(1 << 3) + _varint(size))


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2): tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _keeps_data(tensor: onnx.TensorProto) -> bool:
    size = math.prod(tensor.dims)
    limit = _SKELETON_KEEP_INT if tensor.data_type in _INT_TYPES else _SKELETON_KEEP_ANY
    return size <= limit


def infer_value_info(
    model: onnx.ModelProto, memo: ShapeMemo, *, keep_resolved: bool = False, symbolic: bool = False
) -> bool:
    """Replace `model`'s value_info by what inference finds (see the module docstring); returns
    whether anything changed. With `keep_resolved`, the output shapes of Reshape and Expand
    nodes already in value_info guide inference downstream; with `symbolic`, dims ONNX's
    inference leaves open are filled from ONNX Runtime's symbolic inference.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2, 3] x) => (float[3, 2] y) { t = Relu(x)  y = Transpose(t) }''')
    >>> infer_value_info(m, ShapeMemo()), [vi.name for vi in m.graph.value_info]
    (True, ['t'])
    """
    hints = _resolved_hints(model) if keep_resolved else []
    inferred = memo.inferred(model, hints, symbolic)
    graph = model.graph
    modified = not _same_protos(graph.value_info, inferred.graph.value_info)
    if modified:
        graph.ClearField("value_info")
        graph.value_info.extend(inferred.graph.value_info)
    # graph outputs keep their declared types (their dims, symbols included, are the model's
    # interface); only an output declared without a shape, or with fewer static dims than
    # inference now finds, takes the inferred type
    found = {vi.name: vi for vi in inferred.graph.output}
    for out in graph.output:
        new = found.get(out.name)
        if new is not None and _has_shape(new) and _static_dims(new) > _static_dims(out):
            out.CopyFrom(new)
            modified = True
    return modified
