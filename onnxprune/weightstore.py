"""The weight store: the one place a pruning run reads and writes weight values.

Reads go through `tensor_array`, so a weight kept in an external data file is a memory map,
released when the caller drops it: scoring a large model never holds more than the tensor being
scored. A weight in the proto is copied out of it when read (protobuf gives no view of its
bytes); up to `keep_bytes` of those copies are kept (`kept`) so that slicing does not read them
again. Writes (`write`) replace a weight's values in place, keeping its name, and are recorded as
plan `updates` by the pass that made them.

>>> import numpy as np, onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}> { y = Add(x, b) }''')
>>> store = WeightStore(m)
>>> store["b"].tolist()
[1.0, 2.0]
>>> store.write("b", np.array([0.5, 0.5], np.float32))
>>> store["b"].tolist()
[0.5, 0.5]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx

from onnxprune.weights import set_weight, tensor_array, weight_tensors

DEFAULT_KEEP_BYTES = 256 << 20
"""Weights read out of the proto that are kept for slicing (at most)."""


class WeightStore(Mapping[str, np.ndarray]):
    """Weight values of `model` by name (initializers and Constant outputs), read when asked for.

    `names` limits the store to those tensors (the ones scoring reads); by default every weight
    of the model. `base_dir` is where external data resolves (`LoadedModel.base_dir`).
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        base_dir: str | os.PathLike | None = None,
        *,
        names: Iterable[str] | None = None,
        keep_bytes: int = DEFAULT_KEEP_BYTES,
    ) -> None:
        self._model = model
        self._base_dir = base_dir
        self._names = None if names is None else set(names)
        self._tensors: dict[str, onnx.TensorProto] | None = None
        self._room = keep_bytes
        self.kept: dict[str, np.ndarray] = {}
        """Values copied out of the proto by reads, by name (at most `keep_bytes` of them)."""

    @property
    def base_dir(self) -> str | os.PathLike | None:
        return self._base_dir

    def _index(self) -> dict[str, onnx.TensorProto]:
        if self._tensors is None:
            if self._names is None:
                self._tensors = weight_tensors(self._model)
            else:  # only initializers are scored: normalization made every Constant one
                self._tensors = {t.name: t for t in self._model.graph.initializer if t.name in self._names}
        return self._tensors

    def __getitem__(self, name: str) -> np.ndarray:
        array = self.kept.get(name)
        if array is None:
            array = tensor_array(self._index()[name], self._base_dir)
            if not isinstance(array, np.memmap) and array.nbytes <= self._room:
                self.kept[name] = array
                self._room -= array.nbytes
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def write(self, name: str, array: np.ndarray) -> None:
        """Give weight `name` the values (and shape) of `array`, in place, keeping its name."""
        set_weight(self._model, name, array)
        self.kept.pop(name, None)
        self._tensors = None  # the proto holding it may have been replaced

    def graph_changed(self) -> None:
        """Forget the tensor index: a pass rebuilt the initializer list (values in `kept` stay
        valid: their shape and type are checked again by whoever slices them)."""
        self._tensors = None

    def release(self) -> None:
        """Drop the kept copies (their memory back before the MAC count)."""
        self.kept.clear()
