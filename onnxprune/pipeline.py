"""The public entry points: `prune` runs the stages of `onnxprune.stages` over a session and
returns a `PruneResult`; `analyze` stops after the analysis.

>>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.save("default_pruned.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ParamSpec, TypeVar

import onnx

from onnxprune.analysis import DependencyAnalysis
from onnxprune.budget import DEFAULT_MAX_GROUP_RATIO, Budget
from onnxprune.calibration import CalibrationData, calibration_data
from onnxprune.costs import CostModel
from onnxprune.data import DataSource
from onnxprune.depth import DropBlocks
from onnxprune.errors import ModelError, UsageError
from onnxprune.group_sensitivity import sensitivity
from onnxprune.importance import default_importances
from onnxprune.io import ModelLike, has_external_data, materialize, save_model
from onnxprune.plan import Plan
from onnxprune.report import PruneReport
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.sparsity import SparsityOptions, parse_nm
from onnxprune.speedup import prune_to_speedup
from onnxprune.stages import Analyze, Normalize, default_stages, run_stages
from onnxprune.targets import DEFAULT_ROUND_TO, ReplayPlan, Target, UniformRatio

_P = ParamSpec("_P")
_R = TypeVar("_R")


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
        structural: onnx.ModelProto | None = None,
        costs: CostModel | None = None,
    ) -> None:
        self._model = model
        self.structural = structural
        self.costs = costs
        """With a budget target: the cost model it allocated against (reusable on this model)."""
        """With compensation: the model as sliced, before compensation changed weights (None
        without); validation checks parity on it."""
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


@_cyclic_gc_paused
def analyze(model: ModelLike, *, exclude: str | None = None) -> DependencyAnalysis:
    """Coupling groups and barriers of a model (path, bytes or ModelProto).

    >>> analysis = analyze("models/resnet_dynamo.onnx")  # doctest: +SKIP
    >>> len(analysis.prunable_groups) > 0  # doctest: +SKIP
    True
    """
    options = PruneOptions(target=None, exclude=_check_exclude(exclude))
    session = run_stages(PruneSession.open(model, options), [Normalize(), Analyze()])
    return session.analysis


@_cyclic_gc_paused
def prune(
    model: ModelLike,
    *,
    ratio: float | None = None,
    head_ratio: float | None = None,
    ffn_ratio: float | None = None,
    criterion: str | None = None,
    round_to: int = DEFAULT_ROUND_TO,
    exclude: str | None = None,
    plan: Plan | str | os.PathLike | None = None,
    target: Target | None = None,
    calibration: DataSource | CalibrationData | None = None,
    calibration_samples: int | None = None,
    eval_data: DataSource | None = None,
    holdout: float = 0.2,
    compensate: str | None = None,
    progress: Callable[[int], None] | None = None,
    target_macs: float | None = None,
    target_params: float | None = None,
    target_speedup: float | None = None,
    allocation: str = "global",
    max_group_ratio: float = DEFAULT_MAX_GROUP_RATIO,
    input_shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
    threads: int = 2,
    drop_blocks: int | None = None,
    depth_ratio: float | None = None,
    depth_criterion: str | None = None,
    sparsity: float | None = None,
    sparsity_scope: str = "layer",
    nm: str | tuple[int, int] | None = None,
    sparse_format: bool = False,
) -> PruneResult:
    """Remove `ratio` of the channels of every prunable coupling group.

    Head groups lose `head_ratio` of their heads, other groups (FFN neurons, filters) `ffn_ratio`
    of their channels; both default to `ratio`. `criterion` names an importance
    (`default_importances().names()`; default `activation` with calibration data, else `l1`); a
    `target` (`onnxprune.targets`) replaces the ratios.

    `calibration`: an ``.npz`` file, a folder of ``.npz``/``.npy`` files (keys: input names, first
    axis: samples), a dict of arrays or an iterable of feed dicts (`onnxprune.data`), at most
    `calibration_samples` used. Fidelity is measured on `eval_data`, else on every
    round(1 / `holdout`)-th feed, kept out of the statistics; `progress(samples)` follows the run.

    `compensate` refits kept weights: "bias" (removed channels' mean contribution into consumer
    biases), "lsq" (least-squares refit of each consumer; needs data) or "none"; default "lsq" with
    data. Changed tensors are the plan's `updates`; `result.structural` is the model before they
    changed, for parity (`validate(original, result.model, result.plan, structural=...)`).

    Budgets replace ratios: `target_macs` / `target_params` keep that fraction of the MACs /
    parameters, `target_speedup` is measured in ONNX Runtime at `threads`, `batch`, `input_shapes`
    (dynamic dims, also for MACs; default: the first calibration feed's); `allocation`
    (`onnxprune.budget`) shares the budget, no group losing over `max_group_ratio` of its units.
    `drop_blocks` residual branches (or `depth_ratio` of them) go first (`onnxprune.depth`).
    `sparsity` (per layer; `sparsity_scope` "global": over all layers) or `nm` ("2:4") zero weight
    entries after that, `sparse_format` stores them sparse (`onnxprune.sparsity`); `ratio` optional.

    `model` is a path, bytes or an ``onnx.ModelProto`` (never modified). With `plan`, that plan is
    replayed instead of selecting (ratio, criterion and round_to are ignored).

    >>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
    >>> result.report.params_after < result.report.params_before  # doctest: +SKIP
    True
    """
    calibration = _calibration(calibration, calibration_samples, eval_data, holdout)
    budget = _budget((target_macs, target_params, target_speedup), allocation, max_group_ratio, round_to)
    _check_one_target(budget, ratio, target, plan)
    sparse = _sparsity(sparsity, sparsity_scope, nm, exclude, sparse_format)
    goal = budget or _target(
        ratio, head_ratio, ffn_ratio, round_to, plan, target, (drop_blocks, depth_ratio), sparse
    )
    depth = depth_stage(goal, drop_blocks, depth_ratio, depth_criterion)
    method = _compensation(compensate, calibration is not None, plan is not None, depth is not None)
    importance = default_importances().get(criterion or ("l1" if calibration is None else "activation"))
    measure = {"input_shapes": input_shapes, "batch": batch, "threads": threads, "sparsity": sparse}
    options = PruneOptions(goal, importance, _check_exclude(exclude), calibration=calibration, **measure)
    options = _with_sensitivity(options, model)
    if target_speedup is not None:
        return prune_to_speedup(lambda o: _run(model, o, progress, method), options, model, target_speedup)
    return _run(model, options, progress, method, depth)


def _with_sensitivity(options: PruneOptions, model: ModelLike) -> PruneOptions:
    """A sensitivity-allocated budget without curves gets them measured on `model` (structural
    prunes of each group alone, fidelity on the calibration data's held-out share, or on random
    feeds without data; `onnxprune.sensitivity`)."""
    goal = options.target
    if not isinstance(goal, Budget) or goal.allocation != "sensitivity" or goal.sensitivity is not None:
        return options
    curves = sensitivity(
        model,
        calibration=options.calibration,
        criterion=options.importance.name,
        round_to=goal.round_to,
        exclude=options.exclude,
        latency_runs=0,
        threads=options.threads or 2,
        input_shapes=options.input_shapes,
    )
    return dataclasses.replace(options, target=dataclasses.replace(goal, sensitivity=curves.loss_curves()))


def _run(
    model: ModelLike, options: PruneOptions, progress, method: str | None, depth: DropBlocks | None = None
) -> PruneResult:
    """One pass of the stages over `model` with `options`."""
    calibration = options.calibration
    session = PruneSession.open(model, options)
    loaded = session.source
    try:
        stages = default_stages(
            calibration, progress, method, options.target.needs_costs, depth, options.sparsity
        )
        run_stages(session, stages)
    except ModelError as exc:  # a problem found deep in a stage: name the file it is in
        located = exc.located(loaded.name)
        if located is exc:
            raise
        raise located from exc
    return _result(session)


def _result(session: PruneSession) -> PruneResult:
    """The result of a session that ran to the end."""
    loaded = session.source
    return PruneResult(
        costs=session.costs,
        model=session.output,
        structural=session.structural,
        plan=session.plan,
        report=session.report,
        analysis=session.analysis,
        source_path=str(loaded.path) if loaded.path is not None else None,
        base_dir=loaded.base_dir if has_external_data(session.output) else None,
        external=loaded.external,
        protect=loaded.data_files,
    )


def _calibration(
    data: DataSource | CalibrationData | None,
    samples: int | None,
    eval_data: DataSource | None,
    holdout: float,
) -> CalibrationData | None:
    """`prune`'s calibration arguments as `CalibrationData` (None: no data)."""
    if data is None or isinstance(data, CalibrationData):
        return data
    return calibration_data(data, samples=samples, eval_data=eval_data, holdout=holdout)


def _check_one_target(budget: Budget | None, *others: object) -> None:
    """UsageError when a budget comes with a ratio, a target or a plan."""
    if budget is not None and any(other is not None for other in others):
        raise UsageError("give either a budget (target_macs/params/speedup) or a ratio, target or plan")


def _budget(
    targets: tuple[float | None, float | None, float | None],
    allocation: str,
    max_group_ratio: float,
    round_to: int,
) -> Budget | None:
    """The budget target of `prune`'s (target_macs, target_params, target_speedup) (None: none)."""
    asked = {k: v for k, v in zip(("macs", "params", "speedup"), targets, strict=True) if v is not None}
    if not asked:
        return None
    if len(asked) > 1:
        raise UsageError(f"give one budget, not {' and '.join('target_' + k for k in asked)}")
    ((metric, value),) = asked.items()
    if metric == "speedup":
        if not float(value) > 1.0:
            raise UsageError(f"target_speedup {value} must be > 1")
        metric, value = "latency", 1.0 / float(value)
    return Budget(metric, float(value), allocation, max_group_ratio, round_to=int(round_to))


def _target(
    ratio: float | None,
    head_ratio: float | None,
    ffn_ratio: float | None,
    round_to: int,
    plan: Plan | str | os.PathLike | None,
    target: Target | None,
    depth: tuple[int | None, float | None] = (None, None),
    sparsity: SparsityOptions | None = None,
) -> Target:
    """The target `prune`'s arguments ask for (with depth, `(drop_blocks, depth_ratio)`, or weight
    `sparsity`, no ratio means no channel removed)."""
    if plan is not None:
        return ReplayPlan(plan if isinstance(plan, Plan) else Plan.load(plan))
    if target is not None:
        return target
    if ratio is None and ffn_ratio is None and head_ratio is None:
        if any(d is not None for d in depth) or sparsity is not None:
            return UniformRatio(ratio=0.0, round_to=int(round_to))
        raise UsageError("give a ratio (or a plan to replay)")
    for name, value in (("ratio", ratio), ("head_ratio", head_ratio), ("ffn_ratio", ffn_ratio)):
        if value is not None and not 0.0 <= float(value) < 1.0:
            raise UsageError(f"{name} {value} is outside [0, 1)")
    return UniformRatio(
        ratio=float(ffn_ratio if ffn_ratio is not None else ratio or 0.0),
        head_ratio=float(head_ratio if head_ratio is not None else ratio or 0.0),
        round_to=int(round_to),
    )


def depth_stage(
    target: Target, drop_blocks: int | None, depth_ratio: float | None, criterion: str | None
) -> DropBlocks | None:
    """The depth-pruning stage `prune`'s arguments ask for, or a replayed plan's `dropped` needs."""
    if drop_blocks is not None and depth_ratio is not None:
        raise UsageError("give drop_blocks or depth_ratio, not both")
    if isinstance(target, ReplayPlan):
        return DropBlocks() if target.plan.dropped else None
    if isinstance(target, Budget) and (drop_blocks is not None or depth_ratio is not None):
        raise UsageError("depth pruning (drop_blocks, depth_ratio) does not take part in budgets yet")
    if drop_blocks is None and depth_ratio is None:
        if criterion is not None:
            raise UsageError("a depth criterion needs drop_blocks or depth_ratio")
        return None
    return DropBlocks(count=drop_blocks, ratio=depth_ratio, criterion=criterion)


COMPENSATIONS = ("none", "bias", "lsq")


def _compensation(asked: str | None, calibrated: bool, replay: bool, depth: bool = False) -> str | None:
    """The compensation method to run (None: none), from `prune`'s `compensate`; none, and
    refused, with depth pruning."""
    if asked is None:
        asked = "lsq" if calibrated and not replay and not depth else "none"
    if depth and asked != "none":
        raise UsageError("compensation is not supported together with depth pruning (--drop-blocks)")
    if asked not in COMPENSATIONS:
        raise UsageError(f"compensate {asked!r} is not one of {', '.join(COMPENSATIONS)}")
    if asked == "lsq" and not calibrated:
        raise UsageError("lsq compensation needs calibration data (--calib); 'bias' works without")
    return None if asked == "none" else asked


def _sparsity(
    ratio: float | None,
    scope: str,
    nm: str | tuple[int, int] | None,
    exclude: str | None,
    sparse_format: bool,
) -> SparsityOptions | None:
    """The weight sparsity `prune`'s arguments ask for (None: none)."""
    if nm is not None:
        pair = parse_nm(nm) if isinstance(nm, str) else (int(nm[0]), int(nm[1]))
        if ratio:
            raise UsageError("give a sparsity ratio or an N:M pattern (--nm), not both")
        return SparsityOptions(nm=pair, exclude=_check_exclude(exclude), sparse_format=sparse_format)
    if ratio is None:
        if sparse_format:
            raise UsageError("sparse format needs weight sparsity (--sparsity or --nm)")
        return None
    return SparsityOptions(float(ratio), scope, None, _check_exclude(exclude), sparse_format)  # type: ignore[arg-type]


def _check_exclude(exclude: str | None) -> str | None:
    if exclude is None:
        return None
    try:
        re.compile(exclude)
    except re.error as exc:
        raise UsageError(f"--exclude {exclude!r} is not a valid regular expression: {exc}") from exc
    return exclude


__all__ = ["PruneReport", "PruneResult", "analyze", "prune"]
