"""Sensitivity: how much each coupling group, pruned alone, costs in fidelity and saves in cost.

`sensitivity(model, ratios=...)` prunes every prunable group alone at each ratio (the rest of the
model untouched: `SingleGroup`) and records, for each, the fidelity of the outputs to the
original (cosine and relative error, on calibration data or random feeds), the MACs removed and
the measured latency change. The model is loaded, normalized, analysed, calibrated and scored
once; each (group, ratio) then runs only the plan, apply and cleanup stages on a copy of the
normalized model (a ResNet-50 has ~50 groups: re-running the whole pipeline for each would
repeat the analysis hundreds of times). The original's outputs are taken once too.

The curves feed `onnxprune.allocation.allocate_by_sensitivity` (least total fidelity loss under a
MACs budget) and `onnxprune.plots.plot_sensitivity`.

>>> report = sensitivity("models/resnet_dynamo.onnx", ratios=(0.25, 0.5))  # doctest: +SKIP
>>> worst = report.worst(1)[0]  # doctest: +SKIP
>>> worst.name, round(worst.points[-1].cosine, 3)  # doctest: +SKIP
('fc.weight:1, layer2.conv2.weight:0, layer2.conv2.weight_bias:0 (+2 more)', 0.919)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxprune.analysis import DependencyAnalysis, Group
from onnxprune.bench import benchmark
from onnxprune.calibration import CalibrationData, calibration_data
from onnxprune.costs import CostModel, MacsCost
from onnxprune.data import DataSource
from onnxprune.errors import ModelError, UsageError
from onnxprune.fidelity import FidelityReport, ReferenceOutputs, compare_to_reference, reference_outputs
from onnxprune.importance import UnitScores, default_importances
from onnxprune.io import ModelLike, has_external_data, materialize, read_model
from onnxprune.passes import AnalysisCache
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import Analyze, Apply, BuildPlan, Calibrate, Cleanup, Count, Normalize, run_stages
from onnxprune.targets import DEFAULT_ROUND_TO, Decisions, Target, kept_count, top_units
from onnxprune.weightstore import WeightStore

DEFAULT_RATIOS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class SingleGroup(Target):
    """Remove `ratio` of the units of group `group` only (every other group stays whole), the
    lowest-ranked by member-normalized score, as `UniformRatio` ranks them; head groups are not
    rounded, channel groups keep a multiple of `round_to` (`kept_count`).

    >>> SingleGroup(group=3, ratio=0.5).kept_of(64, "channels")
    32
    """

    group: int
    ratio: float
    round_to: int = DEFAULT_ROUND_TO

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.ratio) < 1.0:
            raise UsageError(f"ratio {self.ratio} is outside [0, 1)")

    def kept_of(self, size: int, kind: str) -> int:
        """Units of a group of `size` units of `kind` that stay."""
        return kept_count(size, self.ratio, 1 if kind == "heads" else int(self.round_to))

    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        return [
            g
            for g in analysis.prunable_groups
            if g.id == self.group and self.kept_of(g.size, g.kind) < g.size
        ]

    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        return {
            g.id: top_units(scores[g.id].member_normalized(), self.kept_of(g.size, g.kind))
            for g in self.groups_to_score(analysis)
        }


@dataclass(frozen=True)
class GroupRatios(Target):
    """Each listed group loses its own ratio of units, ranked as `SingleGroup` ranks them; the
    other groups stay whole. Applies what `allocate_by_sensitivity` chose.

    >>> target = GroupRatios.of({3: 0.5, 7: 0.25})
    >>> target.ratios
    ((3, 0.5), (7, 0.25))
    """

    ratios: tuple[tuple[int, float], ...]
    round_to: int = DEFAULT_ROUND_TO

    @classmethod
    def of(cls, ratios: Mapping[int, float], round_to: int = DEFAULT_ROUND_TO) -> GroupRatios:
        """The target of a {group id: ratio} mapping."""
        return cls(tuple(sorted((int(g), float(r)) for g, r in ratios.items())), round_to)

    def _parts(self) -> list[SingleGroup]:
        return [SingleGroup(g, r, self.round_to) for g, r in self.ratios]

    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        wanted = {g.id for part in self._parts() for g in part.groups_to_score(analysis)}
        return [g for g in analysis.prunable_groups if g.id in wanted]

    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        decisions: Decisions = {}
        for part in self._parts():
            decisions.update(part.select(analysis, scores))
        return decisions


@dataclass
class SensitivityPoint:
    """One group pruned alone at one ratio. `cosine` is the lowest and `rel_err` the highest over
    the model's outputs; `delta_macs` is MACs removed (before - after), `delta_latency_ms` the
    change of median latency measured against the original, interleaved (negative: faster; a
    small change is within the noise of `latency_runs` runs).
    `kept == size` means rounding left the group whole: nothing was run."""

    ratio: float
    kept: int
    cosine: float | None = None
    rel_err: float | None = None
    argmax_agreement: float | None = None
    macs_after: int | None = None
    delta_macs: int | None = None
    latency_ms: float | None = None
    delta_latency_ms: float | None = None
    error: str | None = None

    @property
    def loss(self) -> float | None:
        """Fidelity lost: 1 - cosine (the relative error for outputs without a cosine); None when
        the point failed."""
        if self.error is not None:
            return None
        if self.cosine is not None:
            return max(0.0, 1.0 - self.cosine)
        return self.rel_err


@dataclass
class GroupCurve:
    """The points of one group, in ratio order; `name` is `Group.describe()` (its weights)."""

    group: int
    name: str
    kind: str
    size: int
    points: list[SensitivityPoint] = field(default_factory=list)

    def worst_loss(self) -> float:
        """The largest fidelity loss of its points (a failed point counts as the worst)."""
        losses = [p.loss for p in self.points]
        return max((math.inf if x is None else x for x in losses), default=0.0)


@dataclass
class SensitivityReport:
    """Every prunable group's curve, and how they were measured (`to_json` / `from_json`)."""

    source: str
    fidelity_source: str
    criterion: str
    round_to: int
    ratios: list[float]
    macs_before: int | None
    latency_ms: float | None
    latency_runs: int
    curves: list[GroupCurve]
    seconds: float = 0.0
    cost: CostModel | None = field(default=None, repr=False, compare=False)
    """The exact MACs model of the analysed model (`onnxprune.costs.MacsCost`), for
    `allocate_by_sensitivity`; not in the JSON (None after `from_json`)."""

    def loss_curves(self) -> dict[int, tuple[tuple[float, float], ...]]:
        """Group id -> ((ratio, fidelity loss), ...) of the points that did not fail: the curves
        `onnxprune.budget.Budget(..., allocation="sensitivity", sensitivity=...)` reads.

        >>> report = SensitivityReport("m", "random feeds", "l1", 8, [0.5], None, None, 0,
        ...     [GroupCurve(3, "w:0", "channels", 16, [SensitivityPoint(0.5, 8, cosine=0.9)])])
        >>> {g: [(r, round(x, 3)) for r, x in c] for g, c in report.loss_curves().items()}
        {3: [(0.5, 0.1)]}
        """
        return {
            c.group: tuple((p.ratio, p.loss) for p in c.points if p.loss is not None) for c in self.curves
        }

    def worst(self, n: int = 5) -> list[GroupCurve]:
        """The `n` groups that lose the most fidelity (at their worst point), worst first."""
        return sorted(self.curves, key=lambda c: (-c.worst_loss(), c.group))[:n]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (non-finite floats become None); the cost model is left out."""
        data = dataclasses.asdict(dataclasses.replace(self, cost=None))
        del data["cost"]
        return _finite(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SensitivityReport:
        """The report `to_json` wrote (after a trip through `json`)."""
        fields = dict(data)
        fields["curves"] = [
            GroupCurve(**{**c, "points": [SensitivityPoint(**p) for p in c["points"]]})
            for c in data["curves"]
        ]
        return cls(**fields)

    def table(self) -> list[list[str]]:
        """Rows (header first) of the table the CLI prints: groups worst first, per ratio the
        cosine and the share of MACs removed."""
        head = ["group", "kind", "size", *(f"r={r:g}: cos / -MACs" for r in self.ratios), "weights"]
        rows = [head]
        for curve in self.worst(len(self.curves)):
            cells = [str(curve.group), curve.kind, str(curve.size)]
            cells += [_cell(p, self.macs_before) for p in curve.points]
            rows.append([*cells, curve.name])
        return rows

    def __str__(self) -> str:
        lines = [
            f"sensitivity of {self.source}: {len(self.curves)} groups x {len(self.ratios)} ratios, "
            f"fidelity on {self.fidelity_source}, criterion {self.criterion}, {self.seconds:.1f} s"
        ]
        lines += ["  " + " | ".join(row) for row in self.table()]
        return "\n".join(lines)


def _cell(point: SensitivityPoint, macs_before: int | None) -> str:
    if point.error is not None:
        return "failed"
    cosine = "n/a" if point.cosine is None else f"{point.cosine:.4f}"
    if point.delta_macs is None or not macs_before:
        return f"{cosine} / n/a"
    return f"{cosine} / {100.0 * point.delta_macs / macs_before:.1f}%"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class _Prepared:
    """What every point shares: the normalized, analysed, scored session and the original's
    outputs and latency."""

    session: PruneSession
    scores: dict[int, UnitScores]
    reference: ReferenceOutputs
    latency_ms: float | None
    original: onnx.ModelProto
    latency_runs: int
    threads: int
    input_shapes: dict[str, list[int]] | None


def sensitivity(
    model: ModelLike,
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    calibration: DataSource | CalibrationData | None = None,
    calibration_samples: int | None = None,
    criterion: str | None = None,
    round_to: int = DEFAULT_ROUND_TO,
    exclude: str | None = None,
    latency_runs: int = 10,
    threads: int = 2,
    input_shapes: dict[str, list[int]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityReport:
    """Prune each prunable group of `model` alone at each of `ratios`; report the curves.

    Units are ranked by `criterion` (default `activation` with `calibration`, `l1` without), on
    statistics of `calibration`'s samples; fidelity is measured on its held-out share (a fifth,
    as `prune` splits it), or on three random feeds without data. `latency_runs` timed runs of
    each pruned model (0: no latency) give `delta_latency_ms`. `progress(done, total)` follows
    the points; `input_shapes` give dynamic dims other than the batch. No compensation: the
    curves are the structural prune's.

    >>> report = sensitivity("models/default.onnx", ratios=(0.5,), latency_runs=0)  # doctest: +SKIP
    >>> [round(p.cosine, 3) for p in report.curves[0].points]  # doctest: +SKIP
    [0.999]
    """
    ratios = _check_ratios(ratios)
    if latency_runs < 0:
        raise UsageError(f"latency_runs must be >= 0, got {latency_runs}")
    if calibration is not None and not isinstance(calibration, CalibrationData):
        calibration = calibration_data(calibration, samples=calibration_samples)
    criterion = criterion or ("activation" if calibration is not None else "l1")
    start = time.perf_counter()
    prepared = _prepare(model, calibration, criterion, exclude, (latency_runs, threads, input_shapes))
    base = prepared.session
    groups = base.analysis.prunable_groups
    total, done = len(groups) * len(ratios), 0
    curves = []
    for group in groups:
        curve = GroupCurve(group.id, group.describe(), group.kind, group.size)
        for ratio in ratios:
            target = SingleGroup(group.id, ratio, round_to)
            curve.points.append(_point(prepared, target, group))
            done += 1
            if progress is not None:
                progress(done, total)
        curves.append(curve)
    return SensitivityReport(
        source=base.source.name,
        fidelity_source=prepared.reference.source,
        criterion=criterion,
        round_to=int(round_to),
        ratios=list(ratios),
        macs_before=base.macs_before,
        latency_ms=prepared.latency_ms,
        latency_runs=latency_runs,
        curves=curves,
        seconds=time.perf_counter() - start,
        cost=_macs_cost(base, input_shapes),
    )


def _macs_cost(session: PruneSession, input_shapes: dict[str, list[int]] | None) -> MacsCost | None:
    """The exact MACs model of the normalized model, or None where shapes are unknown."""
    try:
        return MacsCost.build(session.model, session.analysis, session.options.op_table, input_shapes)
    except ModelError:
        return None


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    values = sorted({float(r) for r in ratios})
    if not values:
        raise UsageError("give at least one ratio")
    bad = [r for r in values if not 0.0 < r < 1.0]
    if bad:
        raise UsageError(f"ratios must be in (0, 1): {bad}")
    return values


def _prepare(
    model: ModelLike,
    calibration: CalibrationData | None,
    criterion: str,
    exclude: str | None,
    timing: tuple[int, int, dict[str, list[int]] | None],
) -> _Prepared:
    """Load, normalize, analyse, calibrate, count and score every prunable group, once."""
    importance = default_importances().get(criterion)
    if importance.needs_activations and calibration is None:
        raise UsageError(f"criterion {criterion!r} needs calibration data (--calib)")
    options = PruneOptions(target=None, importance=importance, exclude=exclude, calibration=calibration)
    session = PruneSession.open(model, options)
    stages = [Normalize(), Analyze(), *([Calibrate()] if calibration is not None else []), Count()]
    run_stages(session, stages)
    groups = list(session.analysis.prunable_groups)
    scores = importance.score(groups, session) if groups else {}
    original = read_model(model).model
    data = None if calibration is None else (calibration.holdout or calibration.fit)
    runs, threads, shapes = timing
    reference = reference_outputs(original, data, threads=threads, input_shapes=shapes)
    latency = None
    if runs:
        latency = benchmark(original, runs=runs, threads=threads, input_shapes=shapes).latency[0].median_ms
    return _Prepared(session, scores, reference, latency, original, runs, threads, shapes)


def _point(prepared: _Prepared, target: SingleGroup, group: Group) -> SensitivityPoint:
    """Prune `target`'s group on a copy of the normalized model and measure the result."""
    base, runs, threads = prepared.session, prepared.latency_runs, prepared.threads
    point = SensitivityPoint(target.ratio, target.kept_of(group.size, group.kind))
    if point.kept >= group.size:  # rounding keeps the whole group: the model is the original
        point.cosine, point.rel_err, point.delta_macs = 1.0, 0.0, 0
        point.macs_after, point.delta_latency_ms = base.macs_before, 0.0 if runs else None
        return point
    try:
        output, macs_after = _pruned_copy(base, target.select(base.analysis, prepared.scores))
        _measure(point, compare_to_reference(prepared.reference, output, threads=threads))
        point.macs_after = macs_after
        if macs_after is not None and base.macs_before is not None:
            point.delta_macs = base.macs_before - macs_after
        if runs:  # interleaved with the original, so drift in the machine's speed hits both alike
            timed = benchmark(
                prepared.original, output, runs=runs, threads=threads, input_shapes=prepared.input_shapes
            )
            point.latency_ms = timed.latency[1].median_ms
            point.delta_latency_ms = timed.latency[1].median_ms - timed.latency[0].median_ms
    except Exception as exc:  # one group that fails is reported; the others are still measured
        point.error = f"{type(exc).__name__}: {exc}"
    return point


def _pruned_copy(base: PruneSession, decisions: Decisions) -> tuple[onnx.ModelProto, int | None]:
    """The model with `decisions` applied to a copy of the session's normalized model (plan,
    apply, cleanup: what `prune` runs after selecting), and its MACs."""
    work = onnx.ModelProto()
    work.CopyFrom(base.model)
    trial = dataclasses.replace(
        base,
        model=work,
        weights=WeightStore(work, base.source.base_dir),
        analyses=AnalysisCache(),
        decisions=decisions,
        pass_results=[],
        stage_seconds={},
    )
    run_stages(trial, [BuildPlan(), Apply(), Cleanup()])
    if has_external_data(trial.output):  # ONNX Runtime gets it in memory: the unsliced weights read in
        materialize(trial.output, base.source.base_dir)
    return trial.output, trial.macs_after


def _measure(point: SensitivityPoint, fidelity: FidelityReport) -> None:
    if fidelity.error is not None:
        point.error = fidelity.error
        return
    cosines = [o.cosine for o in fidelity.outputs if o.cosine is not None]
    errors = [o.rel_err for o in fidelity.outputs if o.rel_err is not None]
    agreement = [o.argmax_agreement for o in fidelity.outputs if o.argmax_agreement is not None]
    point.cosine = min(cosines) if cosines else None
    point.rel_err = max(errors) if errors else None
    point.argmax_agreement = min(agreement) if agreement else None


__all__ = [
    "DEFAULT_RATIOS",
    "GroupCurve",
    "GroupRatios",
    "SensitivityPoint",
    "SensitivityReport",
    "SingleGroup",
    "sensitivity",
]
