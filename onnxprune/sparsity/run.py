"""What the sparsity stages need around `sparsify`: the activation norms Wanda scores with
(from the calibration statistics: `onnxprune.calibration.channel_stats`), the plan's updates
merged, and the report's figures (file sizes, sparse format).

>>> from onnxprune.plan import TensorUpdate
>>> merge_updates((TensorUpdate("w", (2,), "compensate-lsq"),), [TensorUpdate("w", (2,), "sparsity")])
(TensorUpdate(tensor='w', shape=(2,), by='compensate-lsq+sparsity'),)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxprune.calibration import channel_stats
from onnxprune.data import DataLoader
from onnxprune.errors import UsageError
from onnxprune.io import has_external_data, materialize, read_model
from onnxprune.plan import TensorUpdate
from onnxprune.runtime import make_feeds
from onnxprune.sparsity.api import SparsityOptions, SparsityReport, sparsify
from onnxprune.sparsity.layout import SparseTarget, sparsity_targets
from onnxprune.sparsity.storage import model_sizes, runs_the_same, to_sparse_initializers
from onnxprune.stats import ChannelStats

if TYPE_CHECKING:
    from onnxprune.session import PruneSession

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


def summary_lines(figures: Mapping[str, Any]) -> list[str]:
    """The CLI summary of a report's sparsity figures: overall, per layer, the dense weights and
    why, file sizes, and that ONNX Runtime runs sparse weights dense."""
    scope = f" ({figures['scope']})" if figures["scope"] else ""
    lines = [
        f"weight sparsity {figures['pattern']}{scope}: {figures['zeros']:,} of {figures['size']:,} entries "
        f"zero ({figures['sparsity']:.1%}) in {len(figures['layers'])} weights; "
        f"{figures['all_sparsity']:.1%} of all Conv/Gemm/MatMul weights"
    ]
    lines += [f"  {x['tensor']} ({x['op_type']} {x['node']}): {x['sparsity']:.1%}" for x in figures["layers"]]
    lines += [f"  dense: {why}" for why in figures["dense"]]
    for what, size in figures.get("file_size", {}).items():
        lines.append(f"  file size, {what}: {size['raw']:,} bytes raw, {size['gzip']:,} gzip")
    stored = figures.get("sparse_format")
    if stored is not None:
        why = f"; {stored['kept_dense']}" if stored["kept_dense"] else ""
        lines.append(f"  sparse initializers: {stored['tensors']} weights{why}")
    return [*lines, figures["note"]]


def wanda_norms(
    model: onnx.ModelProto,
    base_dir: str | None,
    data: DataLoader | None,
    known: Mapping[str, ChannelStats] | None,
) -> dict[str, np.ndarray] | None:
    """Activation norms for Wanda when there are calibration samples (`data`; None: none), taken
    on `model` (read into memory first when it keeps external data)."""
    if data is None:
        return None
    if has_external_data(model):  # ONNX Runtime gets the model in memory: weights read in
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        materialize(copy, base_dir)
        model = copy
    return activation_norms(model, sparsity_targets(model).values(), data, known)


def sparsify_session(
    session: PruneSession, options: SparsityOptions
) -> tuple[SparsityReport, list[TensorUpdate]]:
    """The `Sparsify` stage's work: keep the output as `session.structural` unless compensation
    kept it already, take Wanda's activation norms when there are calibration samples (reusing the
    calibration statistics when nothing was removed structurally), zero the weights of the output."""
    if session.structural is None:
        structural = onnx.ModelProto()
        structural.CopyFrom(session.output)
        session.structural = structural
    base_dir, data = session.source.base_dir, session.options.calibration
    known = session.activations.channels if session.activations and not session.keeps else None
    norms = wanda_norms(session.output, base_dir, data.fit if data else None, known)
    return sparsify(session.output, options, base_dir=base_dir, names=session.input_weights, norms=norms)


def store_sparse_session(session: PruneSession) -> onnx.ModelProto:
    """The `StoreSparse` stage's work: the output with sparse initializers (or as it was), and the
    report's sparse-format figures."""
    dense = session.output
    if has_external_data(dense):
        materialize(dense, session.source.base_dir)
    data = session.options.calibration
    names = [layer.tensor for layer in session.sparsity.layers]
    output, summary = store_sparse(dense, names, data.fit if data is not None else None)
    figures = session.report.sparsity
    if figures is not None:
        figures["sparse_format"] = summary
        figures["file_size"].update(sizes({"sparse_format": output if summary["tensors"] else None}))
    return output


def sparsity_figures(session: PruneSession) -> dict[str, Any] | None:
    """The report's sparsity figures (None without weight sparsity): what was zeroed, the file
    sizes (input, structural prune when there is one, output; raw and gzip) and the note that ONNX
    Runtime's CPU kernels run them dense. Sizes are not measured for a model with external data."""
    found, output = session.sparsity, session.output
    if found is None:
        return None
    if has_external_data(output):
        found.notes.append("file sizes not measured: the model keeps external data")
        return {**found.to_json(), "note": NO_SPEEDUP, "file_size": {}}
    structural = session.structural if session.keeps else None
    models = {"input": read_model(session.input).model, "structural": structural, "output": output}
    return {**found.to_json(), "note": NO_SPEEDUP, "file_size": sizes(models)}
