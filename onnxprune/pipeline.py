"""The pruning pipeline: load, normalize, analyze, score, select, apply, cleanup.

>>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.save("default_pruned.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import gc
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import onnx

from onnxprune.analysis import DependencyAnalysis, RuleContext, analyze_model
from onnxprune.errors import ModelError, PlanError, UsageError
from onnxprune.importance import CRITERIA, Criterion
from onnxprune.io import ModelLike, has_external_data, materialize, read_model, save_model
from onnxprune.metrics import count_params, macs_by_node
from onnxprune.passes import (
    InferShapes,
    PassManager,
    RemoveDeadNodes,
    RewriteNodes,
    ShapeMemo,
    ShrinkValueInfo,
    SliceWeights,
    normalization_passes,
)
from onnxprune.plan import Plan
from onnxprune.selection import DEFAULT_ROUND_TO, build_plan, decisions_from_plan, dim_keeps, select_units
from onnxprune.weights import tensor_array, weight_tensors

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass
class PruneReport:
    """What a pruning run did, in plain figures (``asdict`` gives the JSON report)."""

    source: str
    ratio: float | None
    criterion: str
    round_to: int
    groups_found: int
    groups_prunable: int
    groups_pruned: int
    groups_pinned: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    prunable_macs_fraction: float | None = None
    tensors_sliced: int = 0
    rewrites: int = 0
    barriers: list[str] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PruneResult:
    """The pruned model, the plan that made it, and the report.

    When the input kept its weights in external data files, the pruned model still refers to
    the input's data file for every weight that was not sliced: `save` streams them from there
    to the output's data file, never holding the whole model in memory. Reading `model` loads
    them into the proto first, so it is always a self-contained ``onnx.ModelProto``.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        plan: Plan,
        report: PruneReport,
        analysis: DependencyAnalysis,
        source_path: str | None = None,
        *,
        base_dir: str | None = None,
        external: bool = False,
        protect: Iterable[Path] = (),
    ) -> None:
        self._model = model
        self.plan = plan
        self.report = report
        self.analysis = analysis
        self.source_path = source_path
        self._base_dir = base_dir
        self._external = external
        self._protect = tuple(protect)

    @property
    def model(self) -> onnx.ModelProto:
        """The pruned model (external weights still in the input's data file are read in first)."""
        if self._base_dir is not None:
            materialize(self._model, self._base_dir)
            self._base_dir = None
        return self._model

    @model.setter
    def model(self, value: onnx.ModelProto) -> None:
        self._model = value
        self._base_dir = None

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the pruned model atomically; refuses to overwrite the input unless `force`.

        A model whose input had external data is written with external data again
        (``out.onnx`` and ``out.onnx.data``); so is any model over 2 GB. The input's data files
        are never written over.
        """
        return save_model(
            self._model,
            path,
            source=self.source_path,
            force=force,
            base_dir=self._base_dir,
            external=self._external,
            protect=self._protect,
        )

    def __repr__(self) -> str:
        return (
            f"PruneResult(source={self.report.source!r}, params {self.report.params_before:,} -> "
            f"{self.report.params_after:,}, {len(self.plan.slices)} slices)"
        )


def _cyclic_gc_paused(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `fn` with Python's cyclic garbage collector paused (as it was again afterwards).

    An analysis allocates tens of thousands of small tuples that live until it ends (axes, links,
    group members) and almost no reference cycles; collecting them young costs DenseNet-121 about
    a tenth of its prune time (benchmarks/README.md) and frees nothing. Objects are still freed
    when their last reference goes; cycles wait for the next collection after the call.
    """

    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


def normalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list]:
    """A normalized copy of `model`, and the pass results."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    results = PassManager(normalization_passes()).run(work)
    return work, results


@_cyclic_gc_paused
def analyze(model: ModelLike, *, exclude: str | None = None) -> DependencyAnalysis:
    """Coupling groups and barriers of a model (path, bytes or ModelProto).

    >>> analysis = analyze("models/resnet_dynamo.onnx")  # doctest: +SKIP
    >>> len(analysis.prunable_groups) > 0  # doctest: +SKIP
    True
    """
    work = read_model(model, lazy=True).model  # ours: normalized in place, weights never read
    PassManager(normalization_passes()).run(work)
    return analyze_model(work, exclude=_check_exclude(exclude))


@_cyclic_gc_paused
def prune(
    model: ModelLike,
    *,
    ratio: float | None = None,
    head_ratio: float | None = None,
    ffn_ratio: float | None = None,
    criterion: Criterion = "l1",
    round_to: int = DEFAULT_ROUND_TO,
    exclude: str | None = None,
    plan: Plan | str | os.PathLike | None = None,
) -> PruneResult:
    """Remove `ratio` of the channels of every prunable coupling group.

    Groups of attention heads lose `head_ratio` of their heads and the other groups (FFN
    neurons, filters) `ffn_ratio` of their channels; both default to `ratio`.

    `model` is a path, bytes or an ``onnx.ModelProto`` (never modified). With `plan`, the
    given plan is replayed instead of selecting (ratio, criterion and round_to are ignored).

    >>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
    >>> result.report.params_after < result.report.params_before  # doctest: +SKIP
    True
    """
    if plan is None:
        if ratio is None and ffn_ratio is None and head_ratio is None:
            raise UsageError("give a ratio (or a plan to replay)")
        for name, value in (("ratio", ratio), ("head_ratio", head_ratio), ("ffn_ratio", ffn_ratio)):
            if value is not None and not 0.0 <= float(value) < 1.0:
                raise UsageError(f"{name} {value} is outside [0, 1)")
        channel_ratio = float(ffn_ratio if ffn_ratio is not None else ratio or 0.0)
        heads = float(head_ratio if head_ratio is not None else ratio or 0.0)
        if criterion not in CRITERIA:
            raise UsageError(f"criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
        if int(round_to) < 1:
            raise UsageError(f"round_to must be >= 1, got {round_to}")
    elif not isinstance(plan, Plan):
        plan = Plan.load(plan)
    exclude = _check_exclude(exclude)
    # Memory: the loaded proto is ours (a path or bytes is parsed into it, a ModelProto copied),
    # so it is normalized and pruned in place, never copied again; large external weights stay
    # on disk (read_model lazy) and are read through memory maps one tensor at a time.
    loaded = read_model(model, lazy=True)
    source = loaded.name
    source_path = str(loaded.path) if loaded.path is not None else None
    base_dir = loaded.base_dir
    work = loaded.model
    params_before = count_params(work)
    declared_inputs = [vi.name for vi in work.graph.input]  # weights among them are overridable
    weight_inputs = set(declared_inputs) & {t.name for t in work.graph.initializer}
    input_weights = set(weight_tensors(work))
    metadata = _detach_node_metadata(work.graph)
    memo = ShapeMemo()  # shape inference results of this run, shared by its passes
    norm_results = PassManager(normalization_passes(memo, keep=weight_inputs)).run(work)
    analysis = analyze_model(work, exclude=exclude)
    # the plan names weights of the input model only: not the per-reader copies normalization
    # made of shared constants (UnshareVectorConstants), nor constants it folded
    weight_names = {t.name for t in work.graph.initializer} & input_weights
    if plan is None:
        scored = {m.tensor for g in analysis.prunable_groups for m in g.weight_members}
        tensors = {t.name: t for t in work.graph.initializer if t.name in scored}
        weights = _Weights(tensors, base_dir, keep_bytes=_KEEP_READ_BYTES)
        decisions = select_units(
            analysis,
            weights,
            ratio=channel_ratio,
            head_ratio=heads,
            criterion=criterion,
            round_to=int(round_to),
        )
    else:
        decisions = decisions_from_plan(analysis, plan)
    keeps = dim_keeps(analysis, decisions)
    new_plan = build_plan(analysis, decisions, weight_names, keeps)
    if plan is not None:
        _check_replay(plan, new_plan)
    per_node = _safe_macs_by_node(work)
    prunable_fraction = prunable_macs_fraction(work, analysis, per_node)
    macs_before = sum(per_node.values()) if per_node is not None else None
    results = list(norm_results)
    if keeps:
        ctx = RuleContext(work)
        read = weights.kept if plan is None else {}  # weight values scoring copied out already
        rewrite = RewriteNodes(keeps, ctx, read)
        # slicing comes after dead-node removal: RemoveDeadNodes rebuilds the initializer list,
        # which copies every initializer, and before slicing the large ones are still external
        # references (a few bytes each) when the model was read lazily.
        results += PassManager(
            [
                rewrite,
                RemoveDeadNodes(keep=weight_inputs),
                SliceWeights(keeps, base_dir, read=read),
                ShrinkValueInfo(keeps),  # shapes normalization resolved carry over, checked
                InferShapes(keep_resolved=True, memo=ShapeMemo(capacity=0)),  # new skeleton: no recall
            ]
        ).run(work)
        read.clear()  # the copies are not needed any more: memory back before the MAC count
        new_plan = Plan(slices=new_plan.slices, rewrites=tuple(rewrite.rewrites), groups=new_plan.groups)
        per_node_after = _safe_macs_by_node(work)
        _reattach_node_metadata(work.graph, metadata)
        _restore_weight_inputs(work.graph, declared_inputs)
        out_model = work
        macs_after = sum(per_node_after.values()) if per_node_after is not None else None
    else:  # nothing to remove: the output is the input as it was, not its normalized form
        del work, norm_results
        out_model, macs_after = read_model(model, lazy=True).model, macs_before
    stats = {k: v for r in results for k, v in r.stats.items()}
    report = PruneReport(
        source=source,
        ratio=ratio,
        criterion=criterion,
        round_to=round_to,
        groups_found=len(analysis.groups),
        groups_prunable=len(analysis.prunable_groups),
        groups_pruned=len(decisions),
        groups_pinned=len(analysis.pinned_groups),
        params_before=params_before,
        params_after=count_params(out_model),
        macs_before=macs_before,
        macs_after=macs_after,
        tensors_sliced=stats.get("tensors_sliced", 0),
        rewrites=len(new_plan.rewrites),
        barriers=[str(b) for b in analysis.barriers],
        passes=[{"name": r.name, "modified": r.modified, **r.stats} for r in results],
        prunable_macs_fraction=prunable_fraction,
    )
    return PruneResult(
        model=out_model,
        plan=new_plan,
        report=report,
        analysis=analysis,
        source_path=source_path,
        base_dir=base_dir if has_external_data(out_model) else None,
        external=loaded.external,
        protect=loaded.data_files,
    )


def _detach_node_metadata(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Take the nodes' metadata_props out while the passes run, by each node's first output.

    The dynamo exporter gives every node its stack trace and module path: most of the bytes of a
    graph without its weights, which every shape inference would otherwise serialize, hash,
    parse and return. `_reattach_node_metadata` gives each node that is still there its own back.
    """
    held: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        if node.metadata_props and node.output and node.output[0]:
            keep = held[node.output[0]] = onnx.NodeProto()
            keep.metadata_props.extend(node.metadata_props)
            del node.metadata_props[:]
    return held


def _reattach_node_metadata(graph: onnx.GraphProto, held: dict[str, onnx.NodeProto]) -> None:
    """A node that has metadata now came from elsewhere (the body of an inlined function, which
    writes the call's output): it keeps its own, not the call site's."""
    for node in graph.node:
        keep = held.get(node.output[0]) if node.output else None
        if keep is not None and not node.metadata_props:
            node.metadata_props.extend(keep.metadata_props)


_KEEP_READ_BYTES = 256 << 20
"""Weights read for scoring, copied out of the proto, that are kept for slicing (at most)."""


def _restore_weight_inputs(graph: onnx.GraphProto, declared: list[str]) -> None:
    """List again, in their places, the weights the input model also listed as graph inputs.

    Normalization drops them from the inputs (a graph input is pinned, and such a weight is only
    a default value the caller may override); the pruned model keeps the same interface, with
    the sliced shapes. ONNX Runtime treats these as overridable and does not fold them into
    fusions, as it did not for the input model.
    """
    current = {vi.name: vi for vi in graph.input}
    weights = {t.name: t for t in graph.initializer}
    inputs = []
    for name in declared:
        if name in current:
            inputs.append(current[name])
        elif name in weights:  # a weight declared as input, possibly sliced: its type as it is now
            tensor = weights[name]
            inputs.append(onnx.helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
    listed = set(declared)
    inputs += [vi for name, vi in current.items() if name not in listed]
    if [vi.name for vi in inputs] != list(current):
        del graph.input[:]
        graph.input.extend(inputs)


class _Weights(Mapping[str, np.ndarray]):
    """Weight values by name, read when asked for. An external weight is a fresh memory map each
    time, released as soon as the caller drops it, so scoring a model never holds more than the
    tensor being scored. A weight in the proto is copied out of it when read (protobuf gives no
    view of its bytes); up to `keep_bytes` of those copies are kept in `kept`, for slicing."""

    def __init__(self, tensors: dict[str, onnx.TensorProto], base_dir: str | None, keep_bytes: int) -> None:
        self._tensors = tensors
        self._base_dir = base_dir
        self._room = keep_bytes
        self.kept: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        array = self.kept.get(name)
        if array is None:
            array = tensor_array(self._tensors[name], self._base_dir)
            if not isinstance(array, np.memmap) and array.nbytes <= self._room:
                self.kept[name] = array
                self._room -= array.nbytes
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def prunable_macs_fraction(
    model: onnx.ModelProto, analysis: DependencyAnalysis, per_node: dict[str, int] | None = None
) -> float | None:
    """Share of the model's MACs in nodes whose weights belong to a prunable group (None if unknown).
    `per_node` is `metrics.macs_by_node(model)` when the caller has it already."""
    per_node = _safe_macs_by_node(model) if per_node is None else per_node
    if per_node is None:
        return None
    total = sum(per_node.values())
    if not total:
        return None
    prunable = {m.tensor for g in analysis.prunable_groups for m in g.weight_members}
    covered = sum(
        macs
        for node in model.graph.node
        if node.output
        and (macs := per_node.get(node.output[0]))
        and any(name in prunable for name in node.input[:2])
    )
    return covered / total


def _check_exclude(exclude: str | None) -> str | None:
    if exclude is None:
        return None
    try:
        re.compile(exclude)
    except re.error as exc:
        raise UsageError(f"--exclude {exclude!r} is not a valid regular expression: {exc}") from exc
    return exclude


def _check_replay(given: Plan, derived: Plan) -> None:
    want = {(s.tensor, s.axis): s.keep for s in given.slices if len(s.keep) < s.size}
    got = {(s.tensor, s.axis): s.keep for s in derived.slices}
    for key in sorted(set(want) | set(got)):
        if want.get(key) != got.get(key):
            raise PlanError(
                f"plan does not fit this model: slice of {key[0]} axis {key[1]} "
                f"{'is not implied by the plan' if key not in want else 'differs from the model'}"
            )


def _safe_macs_by_node(model: onnx.ModelProto) -> dict[str, int] | None:
    try:
        return macs_by_node(model, shapes_inferred=True)  # our models: shapes inferred by the passes
    except (ValueError, KeyError, IndexError):
        return None


__all__ = ["ModelError", "PruneReport", "PruneResult", "analyze", "normalize", "prune"]
