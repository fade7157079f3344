"""Sparse initializers (``--sparse-format``), and the size of a model raw and gzip-compressed.

ONNX stores a sparse tensor as its non-zero values and their int64 positions (SparseTensorProto
in ``graph.sparse_initializer``): 8 bytes of index per non-zero, so a float32 weight is smaller
that way only above 2/3 sparsity (`sparse_is_smaller`); each weight is stored sparse only where
it is. ONNX Runtime reads sparse initializers as dense tensors at load time: it runs them as it
runs dense ones (no speedup), and `runs_the_same` checks it gives the same outputs.

>>> import numpy as np
>>> sparse_is_smaller(np.array([0.0, 0.0, 0.0, 0.0, 1.0], np.float32))
True
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.runtime import ort_session

INDEX_BYTES = 8
"""ONNX sparse tensors index their values with int64."""


def sparse_is_smaller(array: np.ndarray) -> bool:
    """True when values plus int64 indices take fewer bytes than the dense array."""
    nonzero = int(np.count_nonzero(array))
    return nonzero * (array.itemsize + INDEX_BYTES) < array.size * array.itemsize


def to_sparse_initializers(model: onnx.ModelProto, names: Iterable[str]) -> list[str]:
    """Move the initializers `names` to ``graph.sparse_initializer`` in place, where that is
    smaller; graph inputs (overridable weights) stay dense. Returns the names moved."""
    wanted = set(names) - {i.name for i in model.graph.input}
    moved = []
    for position in reversed(range(len(model.graph.initializer))):
        tensor = model.graph.initializer[position]
        if tensor.name not in wanted:
            continue
        array = numpy_helper.to_array(tensor)
        if not sparse_is_smaller(array):
            continue
        flat = array.reshape(-1)
        positions = np.flatnonzero(flat).astype(np.int64)
        values = numpy_helper.from_array(flat[positions], tensor.name)
        indices = numpy_helper.from_array(positions, f"{tensor.name}__indices")
        model.graph.sparse_initializer.append(
            onnx.helper.make_sparse_tensor(values, indices, list(array.shape))
        )
        del model.graph.initializer[position]
        moved.append(tensor.name)
    gone = set(moved)  # recorded types of the weights would clash with the sparse ones
    for position in reversed(range(len(model.graph.value_info))):
        if model.graph.value_info[position].name in gone:
            del model.graph.value_info[position]
    moved.reverse()
    return moved


def densified(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every sparse initializer back as a dense one (the model itself when
    it has none)."""
    if not model.graph.sparse_initializer:
        return model
    dense = onnx.ModelProto()
    dense.CopyFrom(model)
    for sparse in dense.graph.sparse_initializer:
        values = numpy_helper.to_array(sparse.values)
        positions = numpy_helper.to_array(sparse.indices).astype(np.int64)
        array = np.zeros(int(np.prod(sparse.dims)), dtype=values.dtype)
        if positions.ndim == 2:  # coordinate form: one row of indices per value
            positions = np.ravel_multi_index(tuple(positions.T), tuple(sparse.dims))
        array[positions] = values
        dense.graph.initializer.append(
            numpy_helper.from_array(array.reshape(tuple(sparse.dims)), sparse.values.name)
        )
    del dense.graph.sparse_initializer[:]
    return dense


def model_sizes(model: onnx.ModelProto) -> tuple[int, int]:
    """(bytes serialized, bytes gzip-compressed at level 6) of a model held in memory."""
    data = model.SerializeToString()
    return len(data), len(gzip.compress(data, compresslevel=6, mtime=0))


def runs_the_same(
    dense: onnx.ModelProto, sparse: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> str | None:
    """None when ONNX Runtime loads `sparse` and computes exactly what `dense` computes on every
    feed; else why not."""
    try:
        want, got = ort_session(dense), ort_session(sparse)
        for feed in feeds:
            for a, b, out in zip(
                want.run(None, dict(feed)), got.run(None, dict(feed)), want.get_outputs(), strict=True
            ):
                if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                    return f"output '{out.name}' differs with sparse initializers"
    except Exception as exc:  # ONNX Runtime refused the model
        return f"ONNX Runtime: {type(exc).__name__}: {str(exc)[:300]}"
    return None
