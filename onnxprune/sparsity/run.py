"""What the sparsity stages need around `sparsify`: the activation norms Wanda scores with
(from the calibration statistics: `onnxprune.calibration.channel_stats`), the plan's updates
merged, and the report's figures (file sizes, sparse format).

>>> from onnxprune.plan import TensorUpdate
>>> merge_updates((TensorUpdate("w", (2,), "compensate-lsq"),), [TensorUpdate("w", (2,), "sparsity")])
(TensorUpdate(tensor='w', shape=(2,), by='compensate-lsq+sparsity'),)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx

from onnxprune.calibration import channel_stats
from onnxprune.data import DataLoader
from onnxprune.errors import UsageError
from onnxprune.plan import TensorUpdate
from onnxprune.runtime import make_feeds
from onnxprune.sparsity.layout import SparseTarget
from onnxprune.sparsity.storage import model_sizes, runs_the_same, to_sparse_initializers
from onnxprune.stats import ChannelStats

NO_SPEEDUP = (
    "ONNX Runtime's CPU kernels run sparse weights dense: no speedup there. What sparsity buys on "
    "CPU is a smaller compressed file; sparse kernels (TensorRT's 2:4 on sparse tensor cores) "
    "are where the pattern runs faster."
)


def rms(stats: ChannelStats) -> np.ndarray:
    """Per-channel root mean square: Wanda's ‖X_c‖ up to a factor the same for every channel of a
    tensor, comparable between tensors of different sizes (global scope)."""
    return np.sqrt(stats.sum_sq / max(stats.count, 1))


def activation_norms(
    model: onnx.ModelProto,
    targets: Iterable[SparseTarget],
    data: DataLoader,
    known: Mapping[str, ChannelStats] | None = None,
) -> dict[str, np.ndarray]:
    """Per-channel RMS of every activation `targets` multiply, on `model` (in memory) over `data`.
    `known` statistics of the same model are used where they exist; the rest are collected in one
    ONNX Runtime run over the data."""
    wanted = {t.activation: t.activation_axis for t in targets}
    norms = {name: rms(known[name]) for name in wanted if known is not None and name in known}
    missing = {name: axis for name, axis in wanted.items() if name not in norms}
    if missing:
        found = channel_stats(model, missing, data)
        if not found:
            raise UsageError(f"{data.source}: no calibration samples to take activation norms on")
        norms.update({name: rms(s) for name, s in found.items()})
    return norms


def merge_updates(
    existing: tuple[TensorUpdate, ...], added: Iterable[TensorUpdate]
) -> tuple[TensorUpdate, ...]:
    """`existing` then `added`; a tensor in both is listed once, its `by` joined with "+"."""
    merged = {u.tensor: u for u in existing}
    for u in added:
        before = merged.get(u.tensor)
        merged[u.tensor] = u if before is None else TensorUpdate(u.tensor, u.shape, f"{before.by}+{u.by}")
    return tuple(merged.values())


def check_feeds(
    model: onnx.ModelProto, data: DataLoader | None, count: int = 2
) -> list[dict[str, np.ndarray]]:
    """`count` feeds to compare two forms of `model` on: random ones where its input shapes are
    static, else the first of `data` (none: an empty list)."""
    try:
        return [make_feeds(model, seed=seed) for seed in range(count)]
    except ValueError:  # a dynamic dim random feeds cannot guess (UsageError is a ValueError)
        if data is None:
            return []
    feeds = []
    for feed in data.feeds(model):
        feeds.append(dict(feed))
        if len(feeds) == count:
            break
    return feeds


def sizes(models: Mapping[str, onnx.ModelProto | None]) -> dict[str, dict[str, int]]:
    """File size in bytes, raw and gzip-compressed, of each model held in memory (None: skipped)."""
    found = {}
    for what, model in models.items():
        if model is not None:
            raw, compressed = model_sizes(model)
            found[what] = {"raw": raw, "gzip": compressed}
    return found


def store_sparse(
    model: onnx.ModelProto, names: Iterable[str], data: DataLoader | None
) -> tuple[onnx.ModelProto, dict[str, object]]:
    """`model` (in memory) with the weights `names` stored as sparse initializers where that is
    smaller, checked to load and give the same outputs in ONNX Runtime; the model as it was and the
    reason when it does not (or nothing was smaller). Returns the model to keep and a summary."""
    sparse = onnx.ModelProto()
    sparse.CopyFrom(model)
    moved = to_sparse_initializers(sparse, names)
    summary: dict[str, object] = {"tensors": len(moved), "kept_dense": None}
    if not moved:
        summary["kept_dense"] = (
            "no sparsified weight is smaller stored sparse (int64 indices: above 2/3 zeros)"
        )
        return model, summary
    feeds = check_feeds(model, data)
    problem = runs_the_same(model, sparse, feeds) if feeds else "no feeds to check it on (dynamic input dims)"
    if problem is not None:
        summary.update(tensors=0, kept_dense=f"sparse initializers not used: {problem}")
        return model, summary
    summary["checked_feeds"] = len(feeds)
    return sparse, summary
