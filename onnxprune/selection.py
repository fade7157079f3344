"""From decisions (the kept units of each group, chosen by a target) to kept positions of every
axis, and to the plan.

>>> keeps = dim_keeps(analysis, decisions)  # doctest: +SKIP
>>> plan = build_plan(analysis, decisions, weight_names, keeps)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from onnxprune.analysis import DependencyAnalysis, Dim
from onnxprune.plan import GroupDecision, Plan, TensorSlice
from onnxprune.targets import Decisions


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
