"""The stages of a pruning run, in the order of shared/DESIGN.md's pipeline.

```
load ─► normalize ─► analyze ─► score ─► select ─► plan ─► count ─► apply ─► cleanup ─► report
```

Each stage is a small object with one job: it declares the session fields it `reads` (they must
be set before it runs) and the ones it `writes` (set after it ran); `run_stages` checks both, so
a stage placed before its inputs exist fails loudly, naming itself. Loading is
`PruneSession.open`; validation and saving happen on the result (`onnxprune.validate`,
`PruneResult.save`). A stage that changes weight values after slicing (compensation) runs after
cleanup, writes through `session.weights.write` and lists each tensor in the plan's `updates`.

>>> [stage.name for stage in default_stages()]  # doctest: +NORMALIZE_WHITESPACE
['normalize', 'analyze', 'score', 'select', 'plan', 'count', 'apply', 'cleanup', 'report']
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import onnx
from threadpoolctl import threadpool_limits

from onnxprune.analysis import analyze_model
from onnxprune.budget import Budget
from onnxprune.calibration import CalibrationData, calibration_shapes, collect_activation_stats
from onnxprune.compensate import compensate
from onnxprune.costs import CostModel, MacsCost, ParamsCost
from onnxprune.errors import UsageError
from onnxprune.fidelity import check_fidelity
from onnxprune.io import has_external_data, materialize, read_model
from onnxprune.latency import LatencyCost, MeasureSettings
from onnxprune.metrics import count_params, macs_by_node
from onnxprune.optable import OpTable
from onnxprune.passes import (
    InferShapes,
    RemoveDeadNodes,
    RewriteNodes,
    ShapeMemo,
    ShrinkValueInfo,
    SliceWeights,
    normalization_passes,
)
from onnxprune.report import PruneReport, budget_summary, prunable_macs_fraction
from onnxprune.selection import build_plan, dim_keeps
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.sparsity import SparsityOptions
from onnxprune.sparsity.run import merge_updates, sparsify_session, sparsity_figures, store_sparse_session
from onnxprune.targets import ReplayPlan, UniformRatio


class Stage(ABC):
    """One step of the pipeline over a `PruneSession`."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, session: PruneSession) -> None:
        """Do the stage's job, reading and writing the declared fields of `session`."""


class StageOrderError(RuntimeError):
    """A stage ran before a field it reads was written, or did not write what it declares."""


def run_stages(session: PruneSession, stages: list[Stage]) -> PruneSession:
    """Run `stages` in order over `session`, checking what each reads and writes; the CPU
    seconds of each go to `session.stage_seconds`."""
    for stage in stages:
        missing = [f for f in stage.reads if not _is_set(getattr(session, f))]
        if missing:
            raise StageOrderError(f"stage {stage.name} reads {', '.join(missing)}, not written yet")
        start = time.process_time()
        stage.run(session)
        session.stage_seconds[stage.name] = time.process_time() - start
        unwritten = [f for f in stage.writes if not _is_set(getattr(session, f))]
        if unwritten:
            raise StageOrderError(f"stage {stage.name} did not write {', '.join(unwritten)}")
    return session


def _is_set(value: object) -> bool:
    return value is not None and value is not False


class Normalize(Stage):
    """Make the graph analyzable without changing what it computes (passes/normalize.py)."""

    name = "normalize"
    reads = ("model",)
    writes = ("normalized",)

    def run(self, session: PruneSession) -> None:
        session.node_metadata = detach_node_metadata(session.model.graph)
        memo = ShapeMemo()  # shape inference results of this run, shared by its passes
        table = session.options.op_table
        passes = normalization_passes(
            memo, keep=session.weight_inputs, table=table, analyses=session.analyses
        )
        session.run_passes(passes)
        session.normalized = True


class KeepReference(Stage):
    """A copy of the normalized, unpruned model: what compensation fits the pruned model to."""

    name = "reference"
    reads = ("normalized",)
    writes = ("reference",)

    def run(self, session: PruneSession) -> None:
        reference = onnx.ModelProto()
        reference.CopyFrom(session.model)
        if has_external_data(reference):  # read in: compensation runs it in ONNX Runtime
            materialize(reference, session.source.base_dir)
        session.reference = reference


class Analyze(Stage):
    """Coupling groups and barriers (onnxprune/analysis/); keeps the rule context it read the
    graph through for the rewriters, until a pass changes the graph."""

    name = "analyze"
    reads = ("normalized",)
    writes = ("analysis",)

    def run(self, session: PruneSession) -> None:
        ctx = session.analyses.rule_context(session.model)  # the last normalization pass's, if current
        options = session.options
        session.analysis = analyze_model(
            session.model, exclude=options.exclude, table=options.op_table, ctx=ctx
        )


class Calibrate(Stage):
    """Run the normalized model over the calibration samples and keep the per-channel statistics
    of every activation a prunable weight multiplies (`onnxprune.calibration`)."""

    name = "calibrate"
    reads = ("analysis",)
    writes = ("activations",)

    def __init__(self, tick: Callable[[int], None] | None = None) -> None:
        self.tick = tick

    def run(self, session: PruneSession) -> None:
        data = session.options.calibration
        if data is None:
            raise UsageError("calibration needs data (--calib)")
        if data.stats is not None:  # taken once for many runs (a sweep)
            session.activations = data.stats
            return
        model = session.reference if session.reference is not None else session.model
        if has_external_data(model):  # ONNX Runtime gets the model in memory: weights read in
            model = onnx.ModelProto()
            model.CopyFrom(session.model)
            materialize(model, session.source.base_dir)
        session.activations = collect_activation_stats(model, session.analysis, data.fit, tick=self.tick)
        if not session.activations.feeds and session.analysis.prunable_groups:  # none: nothing to read
            raise UsageError(f"{data.fit.source}: no calibration samples (after the held-out split)")


class Costs(Stage):
    """The cost model of a budget target's metric, on the normalized model (`onnxprune.costs`)."""

    name = "costs"
    reads = ("analysis",)
    writes = ("costs",)

    def run(self, session: PruneSession) -> None:
        given = session.options.cost_model
        metric = session.options.target.metric
        session.costs = (
            given if given is not None and given.metric == metric else build_costs(metric, session)
        )


class Score(Stage):
    """Per-unit scores of the groups the target needs, from the session's importance."""

    name = "score"
    reads = ("analysis",)
    writes = ("scores",)

    def run(self, session: PruneSession) -> None:
        groups = session.options.target.groups_to_score(session.analysis)
        importance = session.options.importance
        if importance.needs_activations and session.activations is None:
            raise UsageError(f"criterion {importance.name!r} needs calibration data (--calib)")
        session.scores = importance.score(groups, session) if groups else {}


class Select(Stage):
    """The kept units of every group that loses some, chosen by the target."""

    name = "select"
    reads = ("analysis", "scores")
    writes = ("decisions",)

    def run(self, session: PruneSession) -> None:
        target = session.options.target
        if isinstance(target, Budget):
            session.allocation = target.allocate(session.analysis, session.scores, session.costs)
            session.decisions = session.allocation.decisions
        else:
            session.decisions = target.select(session.analysis, session.scores, session.costs)


class BuildPlan(Stage):
    """Kept positions of every axis, and the plan's slices and groups (naming only weights of the
    input model: not the per-reader copies normalization made, nor constants it folded). A
    replayed plan must be the one rebuilt from the units it keeps."""

    name = "plan"
    reads = ("analysis", "decisions")
    writes = ("keeps", "plan")

    def run(self, session: PruneSession) -> None:
        session.keeps = dim_keeps(session.analysis, session.decisions)
        names = {t.name for t in session.model.graph.initializer} & session.input_weights
        session.plan = build_plan(session.analysis, session.decisions, names, session.keeps)
        if session.depth is not None and session.depth.dropped:  # residual branches dropped before
            dropped = tuple(c.entry() for c in session.depth.dropped)
            session.plan = dataclasses.replace(session.plan, dropped=dropped)
        if isinstance(session.options.target, ReplayPlan):
            session.options.target.check(session.plan)


class Count(Stage):
    """MACs of the normalized model, and the share of them in prunable groups."""

    name = "count"
    reads = ("analysis",)

    def run(self, session: PruneSession) -> None:
        per_node = safe_macs_by_node(session.model, session.options.op_table)
        session.prunable_macs_fraction = prunable_macs_fraction(session.model, session.analysis, per_node)
        session.macs_before = sum(per_node.values()) if per_node is not None else None
        if session.depth is not None:  # counted before residual branches were dropped
            session.macs_before = session.depth.macs_before


class Apply(Stage):
    """Rewrite the nodes that store channel counts, drop what is dead, slice the weights.

    Slicing comes after dead-node removal: RemoveDeadNodes rebuilds the initializer list, which
    copies every initializer, and before slicing the large ones are still external references
    (a few bytes each) when the model was read lazily."""

    name = "apply"
    reads = ("keeps", "plan")

    def run(self, session: PruneSession) -> None:
        if not session.keeps:
            return
        ctx = session.analyses.rule_context(session.model)  # the analysis's: the graph is as it read it
        read = session.weights.kept  # values scoring copied out already
        rewrite = RewriteNodes(session.keeps, ctx, read, table=session.options.op_table)
        session.run_passes(
            [
                rewrite,
                RemoveDeadNodes(keep=session.weight_inputs),
                SliceWeights(session.keeps, session.weights.base_dir, read=read),
            ]
        )
        session.weights.release()  # the copies are not needed any more: memory back before cleanup
        plan = session.plan
        session.plan = dataclasses.replace(plan, rewrites=tuple(rewrite.rewrites))


class Cleanup(Stage):
    """Recorded shapes that lost positions, re-inferred shapes, node metadata and the input's
    declared weight inputs back: the output model. With nothing removed, the output is the input
    as it was, not its normalized form."""

    name = "cleanup"
    reads = ("keeps",)
    writes = ("output",)

    def run(self, session: PruneSession) -> None:
        if not session.keeps and not (session.depth is not None and session.depth.dropped):
            session.output = read_model(session.input, lazy=True).model
            session.macs_after = session.macs_before
            return
        session.run_passes(
            [
                ShrinkValueInfo(session.keeps),  # shapes normalization resolved carry over, checked
                InferShapes(keep_resolved=True, memo=ShapeMemo(capacity=0)),  # new skeleton: no recall
            ]
        )
        per_node_after = safe_macs_by_node(session.model, session.options.op_table)
        reattach_node_metadata(session.model.graph, session.node_metadata)
        restore_weight_inputs(session.model.graph, session.declared_inputs)
        session.output = session.model
        session.macs_after = sum(per_node_after.values()) if per_node_after is not None else None


class Compensate(Stage):
    """Refit the kept weights so the pruned model tracks the original (`onnxprune.compensate`):
    `bias` folds the removed channels' mean contribution into the consumers' biases (from the
    calibration samples, or from BatchNormalization parameters without data), `lsq` refits each
    consumer's weights by least squares on both models' activations. The structural prune is kept
    (`structural`) for validation; every changed tensor is listed in the plan's `updates`."""

    name = "compensate"
    reads = ("output", "reference", "plan", "keeps")
    writes = ("structural",)

    def __init__(self, method: str) -> None:
        self.method = method

    def run(self, session: PruneSession) -> None:
        structural = onnx.ModelProto()
        structural.CopyFrom(session.output)
        session.structural = structural
        if not session.keeps:
            return
        data = session.options.calibration
        fit = data.fit if data is not None else None
        # small matrices, many of them: OpenBLAS's own threads waking for each one cost ~15x the
        # arithmetic on 2 cores (default.onnx lsq: 6.5 s with them, 0.44 s without)
        with threadpool_limits(limits=1, user_api="blas"):
            found = compensate(session.reference, session.output, session.keeps, fit, method=self.method)
        session.compensation = found
        session.plan = dataclasses.replace(session.plan, updates=tuple(found.updates))


class Sparsify(Stage):
    """Zero weight entries of what the structural prune (and compensation) left, keeping the model
    before it as `structural` (`onnxprune.sparsity.run.sparsify_session`); each zeroed tensor goes in
    the plan's `updates` (`by` "sparsity" or "sparsity-N:M")."""

    name = "sparsity"
    reads = ("output", "plan")
    writes = ("structural", "sparsity")

    def __init__(self, options: SparsityOptions) -> None:
        self.options = options

    def run(self, session: PruneSession) -> None:
        session.sparsity, updates = sparsify_session(session, self.options)
        session.plan = dataclasses.replace(session.plan, updates=merge_updates(session.plan.updates, updates))


class StoreSparse(Stage):
    """The sparsified weights as sparse initializers where smaller, checked in ONNX Runtime, else
    dense with the reason (`onnxprune.sparsity.run.store_sparse_session`)."""

    name = "sparse-format"
    reads = ("output", "sparsity", "report")

    def run(self, session: PruneSession) -> None:
        session.output = store_sparse_session(session)


class Fidelity(Stage):
    """The output model against the input on the held-out samples: cosine, relative error and
    argmax agreement per output (`onnxprune.fidelity`); with compensation, the structural prune's
    too, so the report shows what compensation bought."""

    name = "fidelity"
    reads = ("output",)
    writes = ("fidelity",)

    def run(self, session: PruneSession) -> None:
        holdout = session.options.calibration.holdout
        original = read_model(session.input).model
        session.fidelity = check_fidelity(original, session.output, holdout)
        if session.structural is not None:
            session.structural_fidelity = check_fidelity(original, session.structural, holdout)


class Report(Stage):
    """The run's figures (`PruneReport`)."""

    name = "report"
    reads = ("analysis", "decisions", "plan", "output")
    writes = ("report",)

    def run(self, session: PruneSession) -> None:
        analysis, results = session.analysis, session.pass_results
        target = session.options.target
        uniform = target if isinstance(target, UniformRatio) else None  # a replayed plan: None, 1
        stats = {k: v for r in results for k, v in r.stats.items()}
        session.report = PruneReport(
            source=session.source.name,
            ratio=uniform.ratio if uniform else None,
            criterion=session.options.importance.name,
            round_to=uniform.round_to if uniform else 1,
            groups_found=len(analysis.groups),
            groups_prunable=len(analysis.prunable_groups),
            groups_pruned=len(session.decisions),
            groups_pinned=len(analysis.pinned_groups),
            params_before=session.params_before,
            params_after=count_params(session.output),
            macs_before=session.macs_before,
            macs_after=session.macs_after,
            tensors_sliced=stats.get("tensors_sliced", 0),
            rewrites=len(session.plan.rewrites),
            barriers=[str(b) for b in analysis.barriers],
            passes=[{"name": r.name, "modified": r.modified, **r.stats} for r in results],
            prunable_macs_fraction=session.prunable_macs_fraction,
            stage_seconds=dict(session.stage_seconds),
            calibration=_calibration_summary(session),
            compensation=_compensation_summary(session),
            fidelity=session.fidelity.to_json() if session.fidelity is not None else None,
            structural_fidelity=(
                session.structural_fidelity.to_json() if session.structural_fidelity is not None else None
            ),
            depth=session.depth.to_json() if session.depth is not None else None,
            sparsity=sparsity_figures(session),
        )
        session.report.budget = budget_summary(
            session.allocation, session.costs, session.output, session.report, session.options.op_table
        )
        target = session.options.target
        note = target.rounding_note(analysis) if isinstance(target, UniformRatio) else None
        session.report.notes = [note] if note else []


def default_stages(
    calibration: CalibrationData | None = None,
    tick: Callable[[int], None] | None = None,
    compensation: str | None = None,
    costs: bool = False,
    depth: Stage | None = None,
    sparsity: SparsityOptions | None = None,
) -> list[Stage]:
    """The pipeline, in order (a replayed plan scores no group). With `calibration`, activation
    statistics are taken after the analysis, and fidelity is measured on its held-out samples;
    `tick(samples)` follows the calibration run. With `compensation` ("bias" or "lsq"), the kept
    weights are refitted after cleanup. With `costs` (a budget target), the cost model of its
    metric is built before scoring. A `depth` stage (`onnxprune.depth.DropBlocks`) drops
    residual branches from the normalized model before the width analysis. With `sparsity`,
    weight entries are zeroed after compensation (stored as sparse initializers after the report
    when it asks)."""
    calibrate = [Calibrate(tick)] if calibration is not None else []
    fidelity = [Fidelity()] if calibration is not None and calibration.holdout is not None else []
    compensate_ = [Compensate(compensation)] if compensation is not None else []
    reference = [KeepReference()] if compensation is not None else []
    sparsify = [Sparsify(sparsity)] if sparsity is not None else []
    store = [StoreSparse()] if sparsity is not None and sparsity.sparse_format else []
    return [
        Normalize(),
        *reference,
        *([depth] if depth is not None else []),
        Analyze(),
        *calibrate,
        *([Costs()] if costs else []),
        Score(),
        Select(),
        BuildPlan(),
        Count(),
        Apply(),
        Cleanup(),
        *compensate_,
        *sparsify,
        *fidelity,
        Report(),
        *store,
    ]


def build_costs(metric: str, session: PruneSession) -> CostModel:
    """The cost model of `metric` for the session's normalized model and analysis."""
    options, model, analysis = session.options, session.model, session.analysis
    if metric == "params":
        return ParamsCost.build(model, analysis)
    shapes = options.input_shapes or calibration_shapes(options.calibration, model, options.batch)
    if metric == "latency":
        settings = MeasureSettings(threads=options.threads or 2, batch=options.batch, input_shapes=shapes)
        return LatencyCost.build(
            model, analysis, options.op_table, settings, lambda ratio: uniform_prune(model, ratio, options)
        )
    return MacsCost.build(model, analysis, options.op_table, shapes, options.batch)


def uniform_prune(model: onnx.ModelProto, ratio: float, options: PruneOptions) -> onnx.ModelProto:
    """A copy of `model` with `ratio` of every group removed (no alignment, l1), for measuring."""
    sub = PruneSession.open(model, PruneOptions(UniformRatio(ratio, round_to=1), op_table=options.op_table))
    run_stages(sub, default_stages())
    return sub.output


def safe_macs_by_node(model: onnx.ModelProto, table: OpTable) -> dict[str, int] | None:
    """MACs per node of a model whose shapes the passes inferred, or None where unknown."""
    try:
        return macs_by_node(model, shapes_inferred=True, table=table)
    except (ValueError, KeyError, IndexError):
        return None


def detach_node_metadata(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Take the nodes' metadata_props out while the passes run, by each node's first output.

    The dynamo exporter gives every node its stack trace and module path: most of the bytes of a
    graph without its weights, which every shape inference would otherwise serialize, hash,
    parse and return. `reattach_node_metadata` gives each node that is still there its own back.
    """
    held: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        if node.metadata_props and node.output and node.output[0]:
            keep = held[node.output[0]] = onnx.NodeProto()
            keep.metadata_props.extend(node.metadata_props)
            del node.metadata_props[:]
    return held


def reattach_node_metadata(graph: onnx.GraphProto, held: dict[str, onnx.NodeProto]) -> None:
    """A node that has metadata now came from elsewhere (the body of an inlined function, which
    writes the call's output): it keeps its own, not the call site's."""
    for node in graph.node:
        keep = held.get(node.output[0]) if node.output else None
        if keep is not None and not node.metadata_props:
            node.metadata_props.extend(keep.metadata_props)


def restore_weight_inputs(graph: onnx.GraphProto, declared: list[str]) -> None:
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


def _calibration_summary(session: PruneSession) -> dict[str, object] | None:
    stats = session.activations
    if stats is None:
        return None
    return {
        "source": stats.source,
        "feeds": stats.feeds,
        "samples": stats.samples,
        "tensors": len(stats.channels),
        "seconds": session.stage_seconds.get("calibrate"),
    }


def _compensation_summary(session: PruneSession) -> dict[str, object] | None:
    found = session.compensation
    if found is None:
        return None
    return {
        "method": found.method,
        "consumers": len(found.consumers),
        "applied": found.applied,
        "tensors_updated": len(found.updates),
        "model_runs": found.model_runs,
        "seconds": found.seconds,
        "skipped": [f"{r.op} {r.node}: {r.reason}" for r in found.consumers if not r.applied],
        "notes": list(found.notes),
    }
