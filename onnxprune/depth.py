"""Depth pruning: drop whole residual branches (`onnxprune.branches`), by count or ratio.

Each droppable branch is a `DepthCandidate`: what dropping it saves (MACs, parameters) and a
score, the larger the more the branch matters. Scores:

- ``block-influence`` (with calibration data, the default then): 1 - cos(x, x + f(x)) between
  the residual stream before and after the branch, per sample (the flattened tensor), averaged
  over the calibration samples: ShortGPT's block influence, applied to every branch.
- ``drop-fidelity`` (with data): 1 - the cosine similarity of the model's outputs with the
  branch dropped alone to the original's, averaged over outputs: one model run per branch.
- ``weight-norm`` (without data): the root-mean-square of the branch's last weights (the
  nearest Conv/Gemm/MatMul weight, layer-scale Mul or BatchNormalization's effective scale
  gamma / sqrt(var + eps) before its output). A weak proxy: it ignores the size of the activations the
  weights multiply; use calibration data when there is any.

The branches with the lowest scores are dropped (`choose`). The `DropBlocks` stage runs this on
the normalized model before the width analysis, so channel pruning works on what is left; it
replays a plan's `dropped` entries under `--apply-plan`.

>>> from onnxprune.branches import ResidualBranch
>>> b = ResidualBranch("add0", "f", "x", "y", ("f",), ("w",))
>>> c = DepthCandidate(b, macs=100, params=16, score=0.5, criterion="weight-norm")
>>> [d.add for d in choose([c], count=1)], c.entry().to_json()
(['add0'], {'add': 'add0', 'branch': 'f', 'input': 'x'})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxprune.branches import BranchAnalysis, ResidualBranch, find_branches
from onnxprune.calibration import CalibrationData
from onnxprune.errors import PlanError, UsageError
from onnxprune.fidelity import check_fidelity
from onnxprune.io import has_external_data, materialize
from onnxprune.passes.drop_branches import DropBranches
from onnxprune.plan import DroppedBranch, Plan
from onnxprune.runtime import run_with_outputs
from onnxprune.session import PruneSession
from onnxprune.stages import Stage, safe_macs_by_node
from onnxprune.targets import ReplayPlan
from onnxprune.weights import get_weight

CRITERIA = ("block-influence", "drop-fidelity", "weight-norm")
LAST_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Mul", "BatchNormalization")


@dataclass(frozen=True)
class DepthCandidate:
    """A droppable residual branch as a budget sees it: the MACs and parameters dropping it
    saves (MACs None where shapes are unknown) and its `score` by `criterion` (larger: matters
    more; the lowest are dropped first)."""

    branch: ResidualBranch
    macs: int | None
    params: int
    score: float
    criterion: str

    def entry(self) -> DroppedBranch:
        """The plan's `dropped` entry: the Add, the branch tensor it read, the branch's input."""
        return DroppedBranch(self.branch.add, self.branch.branch, (("input", self.branch.input),))

    def to_json(self) -> dict[str, Any]:
        return {
            "add": self.branch.add,
            "macs": self.macs,
            "params": self.params,
            "score": None if not math.isfinite(self.score) else self.score,
            "nodes": len(self.branch.nodes),
            "post_norm": self.branch.post_norm,
        }


@dataclass
class DepthReport:
    """What depth pruning did: every candidate (scored), the dropped ones, the MACs of the model
    before any drop and what the drops saved."""

    criterion: str
    candidates: list[DepthCandidate]
    dropped: list[DepthCandidate]
    macs_before: int | None
    rejected: int = 0

    @property
    def macs_removed(self) -> int | None:
        values = [c.macs for c in self.dropped]
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "candidates": [c.to_json() for c in self.candidates],
            "dropped": [c.branch.describe() for c in self.dropped],
            "macs_before": self.macs_before,
            "macs_removed": self.macs_removed,
            "adds_not_branches": self.rejected,
        }


def candidates(
    model: onnx.ModelProto,
    analysis: BranchAnalysis,
    macs: Mapping[str, int] | None,
    scores: Mapping[str, float],
    criterion: str,
) -> list[DepthCandidate]:
    """A `DepthCandidate` per branch of `analysis` (graph order); `scores` by Add name."""
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    return [
        DepthCandidate(
            branch=b,
            macs=None if macs is None else sum(macs.get(n, 0) for n in b.nodes),
            params=sum(sizes.get(w, 0) for w in b.weights),
            score=float(scores[b.add]),
            criterion=criterion,
        )
        for b in analysis.branches
    ]


def choose(found: Sequence[DepthCandidate], count: int) -> list[DepthCandidate]:
    """The `count` lowest-scored candidates (graph order among equal scores); a branch inside
    one already chosen (nested residuals) is skipped."""
    chosen: list[DepthCandidate] = []
    taken: set[str] = set()
    for c in sorted(found, key=lambda c: c.score):
        if len(chosen) == count:
            break
        if taken & ({c.branch.output, *c.branch.nodes}):
            continue
        chosen.append(c)
        taken |= {c.branch.output, *c.branch.nodes}
    return chosen


def weight_norm_scores(model: onnx.ModelProto, analysis: BranchAnalysis) -> dict[str, float]:
    """RMS of each branch's last weights (see the module docstring), by Add name."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    by_output = {n.output[0]: n for n in graph.node if n.output}
    scores = {}
    for b in analysis.branches:
        scores[b.add] = 0.0
        for name in reversed(b.nodes):  # graph order: the last nodes are nearest the output
            node = by_output[name]
            score = _last_weight_rms(model, node, weights)
            if score is not None:
                scores[b.add] = score
                break
    return scores


def _last_weight_rms(model: onnx.ModelProto, node: onnx.NodeProto, weights: set[str]) -> float | None:
    if node.op_type not in LAST_WEIGHT_OPS:
        return None
    if node.op_type == "BatchNormalization":
        if not all(n in weights for n in node.input[1:5]):
            return None
        gamma, var = (np.asarray(get_weight(model, node.input[i]), np.float64) for i in (1, 4))
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        return float(np.sqrt(np.mean((gamma / np.sqrt(var + eps)) ** 2)))
    for name in node.input:
        if name in weights:
            array = np.asarray(get_weight(model, name), np.float64)
            if array.size > 1 and array.dtype.kind == "f":
                return float(np.sqrt(np.mean(array**2)))
    return None


def influence_scores(
    model: onnx.ModelProto, analysis: BranchAnalysis, data: CalibrationData
) -> dict[str, float]:
    """1 - mean cos(x, x + f(x)) of each branch over the calibration samples, by Add name."""
    names = sorted({n for b in analysis.branches for n in (b.input, b.output)})
    sums = dict.fromkeys((b.add for b in analysis.branches), 0.0)
    count = 0
    for values in run_with_outputs(model, names, data.fit):
        for b in analysis.branches:
            sums[b.add] += float(np.sum(_cosines(values[b.input], values[b.output])))
        count += len(next(iter(values.values())))
    if not count:
        raise UsageError(f"{data.fit.source}: no calibration samples to score the branches on")
    return {add: 1.0 - total / count for add, total in sums.items()}


def _cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample (axis 0) of `x` and `y`, flattened."""
    a = np.asarray(x, np.float64).reshape(len(x), -1)
    b = np.asarray(y, np.float64).reshape(len(y), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)


def drop_fidelity_scores(
    model: onnx.ModelProto, analysis: BranchAnalysis, data: CalibrationData
) -> dict[str, float]:
    """1 - the mean output cosine of the model with each branch dropped alone, by Add name."""
    scores = {}
    for b in analysis.branches:
        dropped = onnx.ModelProto()
        dropped.CopyFrom(model)
        DropBranches([b])(dropped)
        report = check_fidelity(model, dropped, data.fit)
        cosines = [o.cosine for o in report.outputs if o.cosine is not None]
        if report.error or not cosines:
            raise UsageError(f"cannot score branch {b.add} by fidelity: {report.error or 'no float output'}")
        scores[b.add] = 1.0 - float(np.mean(cosines))
    return scores


class DropBlocks(Stage):
    """Drop `count` residual branches (or `ratio` of them, rounded) from the normalized model,
    the lowest-scored first by `criterion` (default: block-influence with calibration data,
    weight-norm without); under a `ReplayPlan`, the plan's `dropped` branches."""

    name = "depth"
    reads = ("normalized",)
    writes = ("depth",)

    def __init__(self, count: int | None = None, ratio: float | None = None, criterion: str | None = None):
        if count is not None and count < 0:
            raise UsageError(f"drop-blocks {count} is negative")
        if ratio is not None and not 0.0 <= ratio < 1.0:
            raise UsageError(f"depth ratio {ratio} is outside [0, 1)")
        if criterion is not None and criterion not in CRITERIA:
            raise UsageError(f"depth criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
        self.count, self.ratio, self.criterion = count, ratio, criterion

    def run(self, session: PruneSession) -> None:
        analysis, found, macs_total, criterion = self.scored(session)
        if criterion == "plan":
            chosen = found
        else:
            count = self.count if self.count is not None else round((self.ratio or 0.0) * len(found))
            if count > len(found):
                raise UsageError(f"cannot drop {count} blocks: the model has {len(found)} droppable branches")
            chosen = choose(found, count)
        order = {b.add: i for i, b in enumerate(analysis.branches)}
        chosen = sorted(chosen, key=lambda c: order[c.branch.add])
        session.run_passes([DropBranches([c.branch for c in chosen], keep=session.weight_inputs)])
        session.depth = DepthReport(criterion, list(found), chosen, macs_total, len(analysis.rejected))

    def scored(self, session: PruneSession) -> tuple[BranchAnalysis, list[DepthCandidate], int | None, str]:
        """The branches of the session's normalized model, every candidate with its MACs, params
        and score, the model's MACs and the criterion; changes nothing (what a budget target
        needs to weigh depth against width). Under a `ReplayPlan`: the plan's branches, unscored
        (criterion "plan")."""
        model = session.model
        analysis = find_branches(model)
        macs = safe_macs_by_node(model, session.options.op_table)
        total = sum(macs.values()) if macs is not None else None
        target = session.options.target
        if isinstance(target, ReplayPlan):
            named = BranchAnalysis(tuple(replayed(analysis, target.plan)), ())
            unscored = dict.fromkeys(named.by_add(), math.nan)
            return analysis, candidates(model, named, macs, unscored, "plan"), total, "plan"
        criterion = self._criterion(session)
        scores = self._scores(criterion, _runnable(session), analysis, session.options.calibration)
        return analysis, candidates(model, analysis, macs, scores, criterion), total, criterion

    def _criterion(self, session: PruneSession) -> str:
        data = session.options.calibration
        criterion = self.criterion or ("block-influence" if data is not None else "weight-norm")
        if criterion != "weight-norm" and data is None:
            raise UsageError(f"depth criterion {criterion!r} needs calibration data (--calib)")
        return criterion

    @staticmethod
    def _scores(
        criterion: str, model: onnx.ModelProto, analysis: BranchAnalysis, data: CalibrationData | None
    ) -> dict[str, float]:
        if not analysis.branches:
            return {}
        if criterion == "weight-norm" or data is None:
            return weight_norm_scores(model, analysis)
        if criterion == "drop-fidelity":
            return drop_fidelity_scores(model, analysis, data)
        return influence_scores(model, analysis, data)


def _runnable(session: PruneSession) -> onnx.ModelProto:
    """The working model with its weights in memory (a copy when they are external)."""
    if not has_external_data(session.model):
        return session.model
    model = onnx.ModelProto()
    model.CopyFrom(session.model)
    materialize(model, session.source.base_dir)
    return model


def replayed(analysis: BranchAnalysis, plan: Plan) -> list[ResidualBranch]:
    """The branches a plan's `dropped` entries name; PlanError for one that is not a residual
    branch of this model (its Add missing, or reading another branch or input tensor)."""
    by_add = analysis.by_add()
    reasons = {r.add: r.reason for r in analysis.rejected}
    chosen = []
    for entry in plan.dropped:
        branch = by_add.get(entry.add)
        given = dict(entry.extra).get("input", branch.input if branch else None)
        if branch is None or branch.branch != entry.branch or branch.input != given:
            why = reasons.get(entry.add, "no Add of that name reads that branch and input")
            raise PlanError(f"plan drops branch {entry.add} ({entry.branch}), not one of this model: {why}")
        chosen.append(branch)
    return chosen


def dropped_entries(report: DepthReport | None) -> tuple[DroppedBranch, ...]:
    """The plan's `dropped` list for what `report` dropped (graph order)."""
    return tuple(c.entry() for c in report.dropped) if report is not None else ()


__all__ = [
    "CRITERIA",
    "DepthCandidate",
    "DepthReport",
    "DropBlocks",
    "candidates",
    "choose",
    "drop_fidelity_scores",
    "dropped_entries",
    "influence_scores",
    "weight_norm_scores",
]
