"""`sparsify`: zero weight entries in place, unstructured (per layer or global) or N:M.

Weight sparsity changes no shape: the sparsified weights of Conv, Gemm and MatMul nodes
(`layout.sparsity_targets`) keep their shapes, with some entries set to zero. ONNX Runtime's CPU
kernels run them dense, so the model is not faster there; it compresses better, and sparse
kernels (TensorRT's 2:4 on sparse tensor cores) can use the pattern.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 4] x) => (float[1, 2] y) <float[4, 2] w = {1, -5, 2, 6, -3, 7, 4, 8}>
... { y = MatMul(x, w) }''')
>>> report, updates = sparsify(m, SparsityOptions(ratio=0.5, exclude="no such node"))
>>> report.zeros, updates[0].by
(4, 'sparsity')
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import onnx

from onnxprune.errors import UsageError
from onnxprune.plan import TensorUpdate
from onnxprune.sparsity.layout import SparseTarget, sparsity_targets
from onnxprune.sparsity.masks import global_masks, layer_mask, magnitude, nm_mask, wanda
from onnxprune.weights import set_weight, tensor_array, weight_tensors

Scope = Literal["layer", "global"]
SPARSITY_BY = "sparsity"
"""The plan's `updates` `by` of unstructured sparsity; N:M writes ``sparsity-N:M``."""


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; UsageError unless 0 < N < M.

    >>> parse_nm("2:4")
    (2, 4)
    """
    n, sep, m = str(text).partition(":")
    try:
        pair = (int(n), int(m))
    except ValueError:
        pair = (0, 0)
    if not sep or not 0 < pair[0] < pair[1]:
        raise UsageError(f"--nm {text!r}: expected N:M with 0 < N < M (2:4 keeps 2 of every 4)")
    return pair


def nm_of(by: str) -> tuple[int, int] | None:
    """The N:M pattern an update's `by` names (``"sparsity-2:4"`` -> (2, 4)), or None.

    >>> nm_of("compensate-lsq+sparsity-2:4"), nm_of("sparsity")
    ((2, 4), None)
    """
    for part in by.split("+"):
        if part.startswith(SPARSITY_BY + "-"):
            return parse_nm(part[len(SPARSITY_BY) + 1 :])
    return None


def only_sparsity(by: str) -> bool:
    """True when every pass an update's `by` names is weight sparsity (values zeroed, no other
    change)."""
    return all(part == SPARSITY_BY or part.startswith(SPARSITY_BY + "-") for part in by.split("+"))


@dataclass(frozen=True)
class SparsityOptions:
    """What to zero: `ratio` of the entries (per layer, or over all layers with `scope`
    "global"), or `nm` = (N, M): N kept of every M along the reduction axis. `exclude` is a
    regular expression of node names left dense; None leaves the first and last layers dense.
    `sparse_format` stores the zeroed weights as sparse initializers where that is smaller."""

    ratio: float = 0.0
    scope: Scope = "layer"
    nm: tuple[int, int] | None = None
    exclude: str | None = None
    sparse_format: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise UsageError(f"sparsity {self.ratio} is outside [0, 1)")
        if self.scope not in ("layer", "global"):
            raise UsageError(f"sparsity scope {self.scope!r} is not 'layer' or 'global'")
        if self.nm is not None and self.ratio:
            raise UsageError("give a sparsity ratio or an N:M pattern, not both")
        if self.nm is not None and not 0 < self.nm[0] < self.nm[1]:
            raise UsageError(f"N:M {self.nm} needs 0 < N < M")

    @property
    def by(self) -> str:
        """The `by` of this sparsity's entries in the plan's `updates`."""
        return f"{SPARSITY_BY}-{self.nm[0]}:{self.nm[1]}" if self.nm else SPARSITY_BY


@dataclass
class LayerSparsity:
    """One sparsified weight: its reader `node`, `size` entries of which `zeros` are zero."""

    tensor: str
    node: str
    op_type: str
    shape: tuple[int, ...]
    size: int
    zeros: int
    criterion: str

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclass
class SparsityReport:
    """What `sparsify` did: per layer, and over the sparsified weights (`sparsity`) and over every
    Conv/Gemm/MatMul weight (`all_sparsity`, the dense ones counted too)."""

    pattern: str
    scope: str | None
    layers: list[LayerSparsity] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    """Weights left dense and why (`tensor (node): reason`)."""
    all_size: int = 0
    all_zeros: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for entry, layer in zip(data["layers"], self.layers, strict=True):
            entry["sparsity"] = layer.sparsity
        data.update(size=self.size, zeros=self.zeros, sparsity=self.sparsity)
        data["all_sparsity"] = self.all_zeros / self.all_size if self.all_size else 0.0
        return data


def _choose(
    targets: dict[str, SparseTarget], options: SparsityOptions, names: frozenset[str] | None
) -> tuple[list[SparseTarget], list[str]]:
    """The targets to sparsify, in graph order, and the dense ones with the reason."""
    dense, kept = [], []
    for t in targets.values():
        if names is not None and t.weight not in names:
            dense.append(f"{t.weight} ({t.node}): not a weight of the input model")
        else:
            kept.append(t)
    if options.exclude is None:
        ends = {kept[0].weight: "first layer", kept[-1].weight: "last layer"} if kept else {}
        chosen = [t for t in kept if t.weight not in ends]
        dense += [
            f"{w}: {why} (left dense by default; --exclude sets the dense layers)" for w, why in ends.items()
        ]
        return chosen, dense
    pattern = re.compile(options.exclude)
    chosen = [t for t in kept if not pattern.search(t.node)]
    dense += [f"{t.weight} ({t.node}): excluded by --exclude" for t in kept if pattern.search(t.node)]
    return chosen, dense


def _scores(
    target: SparseTarget, array: np.ndarray, norms: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, str]:
    """The entry scores of one weight and the criterion that made them."""
    channels = norms.get(target.activation) if norms is not None else None
    if channels is None:
        return magnitude(array), "magnitude"
    return wanda(array, target, channels), "wanda"


def sparsify(
    model: onnx.ModelProto,
    options: SparsityOptions,
    *,
    base_dir: str | os.PathLike | None = None,
    names: frozenset[str] | None = None,
    norms: dict[str, np.ndarray] | None = None,
) -> tuple[SparsityReport, list[TensorUpdate]]:
    """Zero entries of the Conv/Gemm/MatMul weights of `model` in place.

    `names` limits the weights to those (the input model's; None: any). `norms` maps activation
    names to per-channel norms (root mean square over the calibration samples): with them, an
    entry's score is Wanda's |W|·‖X‖, else |W|. Returns the report and one `TensorUpdate` per
    changed weight (`by` "sparsity", or "sparsity-N:M").
    """
    targets = sparsity_targets(model)
    chosen, dense = _choose(targets, options, names)
    tensors = weight_tensors(model)
    arrays = {t.weight: tensor_array(tensors[t.weight], base_dir) for t in chosen}
    scored = {t.weight: _scores(t, arrays[t.weight], norms) for t in chosen}
    masks: dict[str, np.ndarray] = {}
    if options.nm is not None:
        n, m = options.nm
        for t in list(chosen):
            k = arrays[t.weight].shape[t.axis]
            if k % m:
                dense.append(f"{t.weight} ({t.node}): reduction length {k} is not a multiple of {m}")
                chosen.remove(t)
                continue
            masks[t.weight] = nm_mask(scored[t.weight][0], t.axis, n, m)
    elif options.scope == "global":
        masks = global_masks({w: s for w, (s, _) in scored.items()}, options.ratio)
    else:
        masks = {w: layer_mask(s, options.ratio) for w, (s, _) in scored.items()}
    report = SparsityReport(
        pattern=f"{options.nm[0]}:{options.nm[1]}" if options.nm else "unstructured",
        scope=None if options.nm else options.scope,
        dense=dense,
    )
    updates = []
    for t in chosen:
        array = arrays[t.weight]
        zeroed = np.where(masks[t.weight], array, np.zeros((), array.dtype))
        set_weight(model, t.weight, zeroed)
        size = math.prod(array.shape)
        report.layers.append(
            LayerSparsity(
                t.weight,
                t.node,
                t.op_type,
                tuple(array.shape),
                size,
                size - int(np.count_nonzero(zeroed)),
                scored[t.weight][1],
            )
        )
        updates.append(TensorUpdate(t.weight, tuple(array.shape), options.by))
    _count_all(model, targets, report, base_dir)
    return report, updates


def _count_all(
    model: onnx.ModelProto,
    targets: dict[str, SparseTarget],
    report: SparsityReport,
    base_dir: str | os.PathLike | None,
) -> None:
    """Size and zeros over every Conv/Gemm/MatMul weight, sparsified or not."""
    tensors = weight_tensors(model)
    for name in targets:
        array = tensor_array(tensors[name], base_dir)
        report.all_size += array.size
        report.all_zeros += array.size - int(np.count_nonzero(array))
