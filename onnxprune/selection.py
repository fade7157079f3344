"""Selection: from analysis and scores to per-group decisions, and from decisions to a plan.

>>> decisions = select_units(analysis, weights, ratio=0.4)  # doctest: +SKIP
>>> plan, keeps = build_plan(analysis, decisions)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.analysis import DependencyAnalysis, Dim
from onnxprune.errors import PlanError, UsageError
from onnxprune.importance import Criterion, unit_scores
from onnxprune.plan import GroupDecision, Plan, TensorSlice

Decisions = dict[int, np.ndarray]
"""Group id -> sorted indices of the units kept."""


DEFAULT_ROUND_TO = 8
"""Kept channel counts default to multiples of 8: ONNX Runtime's CPU kernels lose much of the
gain on odd counts (benchmarks/README.md). Groups under twice this size are not aligned."""


def kept_count(size: int, ratio: float, round_to: int = 1) -> int:
    """How many of `size` units stay at `ratio`, as the nearest multiple of `round_to` when the
    group has at least 2 * `round_to` units (smaller groups cannot be aligned usefully).

    >>> kept_count(64, 0.4), kept_count(64, 0.4, round_to=8), kept_count(6, 0.4, round_to=8)
    (39, 40, 4)
    """
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"ratio {ratio} is outside [0, 1)")
    if round_to < 1:
        raise UsageError(f"round_to {round_to} must be >= 1")
    keep = size - int(np.floor(ratio * size + 1e-9))
    if round_to > 1 and size >= 2 * round_to and keep < size:  # ratio 0 never removes anything
        keep = round(keep / round_to) * round_to  # nearest multiple (ties to even: benchmarks/ used this)
        keep = min(max(keep, round_to), size)
    return max(keep, 1)


def select_units(
    analysis: DependencyAnalysis,
    weights: Mapping[str, np.ndarray],
    *,
    ratio: float,
    head_ratio: float | None = None,
    criterion: Criterion = "l1",
    round_to: int = 1,
) -> Decisions:
    """Keep the highest-scoring units of every prunable group.

    Channel groups lose `ratio` of their units, kept counts rounded to `round_to`; head groups
    (see `Group.kind`) lose `head_ratio` (default `ratio`) of their heads, without rounding.
    """
    decisions: Decisions = {}
    norms: dict = {}  # per-position norms of each weight axis, shared by the groups that read it
    for group in analysis.prunable_groups:
        if group.kind == "heads":
            keep = kept_count(group.size, ratio if head_ratio is None else head_ratio)
        else:
            keep = kept_count(group.size, ratio, round_to)
        if keep >= group.size:
            continue
        scores = unit_scores(group, weights, criterion, norms)
        order = np.argsort(-scores, kind="stable")
        decisions[group.id] = np.sort(order[:keep])
    return decisions


def decisions_from_plan(analysis: DependencyAnalysis, plan: Plan) -> Decisions:
    """Recover which units a plan keeps, from its weight slices (for --apply-plan)."""
    by_key = {(s.tensor, s.axis): s for s in plan.slices}
    decisions: Decisions = {}
    for group in analysis.groups:
        kept: np.ndarray | None = None
        for member in group.weight_members:
            s = by_key.get((member.tensor, member.axis))
            if s is None:
                continue
            if s.size != member.size:
                raise PlanError(
                    f"plan slices {member.tensor} axis {member.axis} of size {s.size}, "
                    f"but the model's axis has {member.size}"
                )
            mask = np.isin(member.positions, np.asarray(s.keep, dtype=np.int64)).all(axis=1)
            units = np.flatnonzero(mask)
            if kept is not None and not np.array_equal(kept, units):
                raise PlanError(f"plan keeps different channels of coupled tensors ({member.key})")
            kept = units
        if kept is not None and len(kept) < group.size:
            if not group.prunable:
                raise PlanError(
                    f"plan prunes {group.describe()}, which this model pins: "
                    + "; ".join(str(b) for b in group.barriers[:2])
                )
            decisions[group.id] = kept
    return decisions


def dim_keeps(analysis: DependencyAnalysis, decisions: Decisions) -> dict[Dim, np.ndarray]:
    """Kept positions of every axis (weights, activations, virtual) that loses positions."""
    shared = analysis.shared_positions  # such an axis keeps what the axis it follows keeps
    kept_mask: dict[Dim, np.ndarray] = {}
    for group in analysis.groups:
        kept = decisions.get(group.id)
        if kept is None:
            continue
        drop = np.ones(group.size, dtype=bool)
        drop[kept] = False
        for member in group.members:
            dim = (member.tensor, member.axis)
            if dim in shared:
                continue
            mask = kept_mask.get(dim)
            if mask is None:
                mask = kept_mask[dim] = np.ones(analysis.dim_sizes[dim], dtype=bool)
            mask[member.positions[drop].reshape(-1)] = False
    keeps = {}
    for dim, mask in kept_mask.items():
        keeps[dim] = np.flatnonzero(mask)
        keeps[dim].flags.writeable = False  # shared with the axes that follow this one
    keeps.update((dim, keeps[first]) for dim, first in shared.items() if first in keeps)
    return keeps


def build_plan(
    analysis: DependencyAnalysis,
    decisions: Decisions,
    weight_names: set[str],
    keeps: dict[Dim, np.ndarray] | None = None,
) -> Plan:
    """The plan for `decisions`: one slice per weight axis that loses positions, and the groups.
    Slices and group members name only tensors in `weight_names` (the input model's weights, not
    copies normalization made). `keeps` is `dim_keeps(analysis, decisions)` when the caller has it
    already."""
    keeps = dim_keeps(analysis, decisions) if keeps is None else keeps
    roles = {(m.tensor, m.axis): m.role for g in analysis.groups for m in g.weight_members}
    as_tuple: dict[int, tuple[int, ...]] = {}  # axes that share positions share one kept array

    def kept(keep: np.ndarray) -> tuple[int, ...]:
        found = as_tuple.get(id(keep))
        if found is None:
            found = as_tuple[id(keep)] = tuple(keep.tolist())
        return found

    slices = tuple(
        TensorSlice(
            tensor=t,
            axis=a,
            size=analysis.dim_sizes[(t, a)],
            keep=kept(keep),
            role=roles.get((t, a), "out"),
        )
        for (t, a), keep in sorted(keeps.items())
        if t in weight_names
    )
    groups = tuple(
        GroupDecision(
            id=g.id,
            size=g.size,
            keep=tuple(np.asarray(decisions.get(g.id, np.arange(g.size))).tolist()),
            members=tuple(m.key for m in g.weight_members if m.tensor in weight_names),
        )
        for g in analysis.groups
        if g.prunable
    )
    return Plan(slices=slices, groups=groups)
