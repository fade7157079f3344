"""Budget targets: keep a stated fraction of the model's MACs, parameters or latency, and let the
tool choose how many units every group keeps.

An allocation turns one knob into kept counts for every group, and the knob is searched
(bisection) until the cost model (`onnxprune.costs`, `onnxprune.latency`) says the budget is met:

- ``uniform``: one ratio for every group (the `--ratio` rule, under a budget);
- ``global``: one threshold on scores made comparable across groups (each group's unit scores
  divided by their mean), so groups whose units matter unevenly lose more;
- ``sensitivity``: per-group ratios from measured sensitivity curves (`allocate_by_sensitivity`).

No group loses more than `max_group_ratio` of its units nor keeps fewer than `min_kept`; kept
channel counts round up to multiples of `round_to`, as the uniform target's do.

>>> Budget("macs", 0.5).describe()
'macs x0.50 (global allocation)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from onnxprune.analysis import DependencyAnalysis, Group
from onnxprune.costs import CostModel
from onnxprune.errors import UsageError
from onnxprune.importance import UnitScores
from onnxprune.targets import DEFAULT_ROUND_TO, Decisions, Target, top_units

METRICS = ("macs", "params", "latency")
ALLOCATIONS = ("uniform", "global", "sensitivity")
DEFAULT_MAX_GROUP_RATIO = 0.8
"""No group loses more than this share of its units unless the user says otherwise."""
_BISECTION_STEPS = 40
_REFINE_STEPS = 64


@dataclass(frozen=True)
class Allocation:
    """What a budget target chose, and how close it came: `asked` and `predicted` are kept
    fractions of the metric (the cost model's, before pruning); `reachable` the lowest fraction
    the caps and pinned groups allow; `note` says why the budget was not met, when it was not."""

    decisions: Decisions = field(repr=False)
    metric: str
    method: str
    asked: float
    predicted: float
    reachable: float
    note: str | None = None
    remarks: tuple[str, ...] = ()
    """What the user should know about a budget that was met (unaligned counts)."""

    @property
    def met(self) -> bool:
        return self.note is None

    def to_json(self) -> dict[str, Any]:
        data = {
            "metric": self.metric,
            "allocation": self.method,
            "asked": round(self.asked, 6),
            "predicted": round(self.predicted, 6),
            "reachable": round(self.reachable, 6),
            "groups_pruned": len(self.decisions),
        }
        if self.note:
            data["note"] = self.note
        if self.remarks:
            data["remarks"] = list(self.remarks)
        return data


@dataclass(frozen=True)
class Budget(Target):
    """Keep `keep` of the model's `metric` ("macs", "params" or "latency"), allocated across
    groups by `allocation`. `sensitivity` (for that allocation) maps group id -> the fidelity
    loss curve `[(ratio, loss), ...]` measured by `onnxprune.sensitivity`.

    >>> Budget("params", 0.5, allocation="uniform", max_group_ratio=0.6).max_group_ratio
    0.6
    """

    metric: str
    keep: float
    allocation: str = "global"
    max_group_ratio: float = DEFAULT_MAX_GROUP_RATIO
    min_kept: int = 1
    round_to: int = DEFAULT_ROUND_TO
    tolerance: float = 0.02
    sensitivity: Mapping[int, tuple[tuple[float, float], ...]] | None = field(default=None, compare=False)
    needs_costs: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"budget metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.allocation not in ALLOCATIONS:
            raise UsageError(f"allocation {self.allocation!r} is not one of {', '.join(ALLOCATIONS)}")
        if not 0.0 < float(self.keep) <= 1.0:
            raise UsageError(f"the {self.metric} budget {self.keep} must be in (0, 1] (kept fraction)")
        if not 0.0 < float(self.max_group_ratio) < 1.0:
            raise UsageError(f"max_group_ratio {self.max_group_ratio} is outside (0, 1)")
        if int(self.min_kept) < 1 or int(self.round_to) < 1:
            raise UsageError("min_kept and round_to must be >= 1")

    def describe(self) -> str:
        return f"{self.metric} x{self.keep:.2f} ({self.allocation} allocation)"

    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        # unaligned limits: the fallback that lands a budget aligned steps cannot may cut these
        loose = dataclasses.replace(self, round_to=1)
        return [g for g in analysis.prunable_groups if loose.max_removed(g) > 0]

    def reachable(self, groups: list[Group], costs: CostModel) -> float:
        """The lowest cost fraction the caps, minimums and alignment allow."""
        return costs.fraction({g.id: g.size - self.max_removed(g) for g in groups})

    def max_removed(self, group: Group) -> int:
        """The most units `group` may lose: the cap, the minimum kept, and alignment."""
        most = min(int(np.floor(self.max_group_ratio * group.size + 1e-9)), group.size - int(self.min_kept))
        return max(group.size - self.aligned(group, group.size - max(most, 0)), 0)

    def step(self, group: Group) -> int:
        """The alignment of `group`'s kept count: `round_to` for channel groups wider than it, else
        1 (heads; no alignment asked)."""
        r = int(self.round_to)
        return r if group.kind == "channels" and group.size > r else 1

    def aligned(self, group: Group, kept: int) -> int:
        """`kept` rounded up to a multiple of the group's `step` (never past its size). A channel
        group no wider than `round_to` stays whole: a few odd channels at the high-resolution
        start of a CNN save little and run slowly (the unaligned fallback may still cut them)."""
        if kept >= group.size:
            return kept
        r = int(self.round_to)
        if group.kind == "channels" and r > 1 and group.size <= r:
            return group.size
        step = self.step(group)
        return min(-(-kept // step) * step, group.size)

    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        return self.allocate(analysis, scores, costs).decisions

    def allocate(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None
    ) -> Allocation:
        """Kept counts meeting the budget as closely as the allocation's knob allows."""
        if costs is None or costs.metric != self.metric:
            raise UsageError(f"a {self.metric} budget needs a {self.metric} cost model")
        if self.allocation == "sensitivity" and not self.sensitivity:
            raise UsageError("allocation 'sensitivity' needs sensitivity curves (onnxprune.sensitivity)")
        groups = self.groups_to_score(analysis)
        reachable = self.reachable(groups, costs)
        counts, predicted = self._counts(groups, scores, costs)
        remarks: tuple[str, ...] = ()
        if not self.within(predicted) and self.round_to > 1:
            # aligned steps are too coarse here (few or small groups): let single units land it
            loose = dataclasses.replace(self, round_to=1)
            counts_loose, fraction = loose._counts(groups, scores, costs)
            if abs(fraction - self.keep) < abs(predicted - self.keep):
                odd = sum(n % self.round_to != 0 and n < g.size for g in groups if (n := counts_loose[g.id]))
                remarks = (
                    f"{odd} group(s) keep a count that is not a multiple of {self.round_to}: "
                    "aligned steps could not land the budget",
                )
                counts, predicted, reachable = counts_loose, fraction, loose.reachable(groups, costs)
        note = None if self.within(predicted) else _why_missed(self, predicted, reachable)
        ranked = {g.id: _ranking(scores[g.id]) for g in groups}
        decisions = {gid: top_units(ranked[gid], n) for gid, n in counts.items() if n < _size(groups, gid)}
        return Allocation(
            decisions, self.metric, self.allocation, float(self.keep), predicted, reachable, note, remarks
        )

    def _counts(
        self, groups: list[Group], scores: Mapping[int, UnitScores], costs: CostModel
    ) -> tuple[dict[int, int], float]:
        """Kept counts from the allocation's knob, bisected, then refined by single steps."""
        knob = _KNOBS[self.allocation](self, groups, scores, costs)
        return _refine(self, groups, _search(knob, costs, float(self.keep)), costs)

    def within(self, fraction: float) -> bool:
        """Whether `fraction` of the metric meets the budget (within `tolerance`, relative)."""
        return abs(fraction - self.keep) <= self.tolerance * self.keep


Knob = Callable[[float], dict[int, int]]
"""Position in [0, 1] (0: nothing removed, 1: every group at its limit) -> kept counts."""


def _size(groups: list[Group], gid: int) -> int:
    return next(g.size for g in groups if g.id == gid)


def _ranking(scores: UnitScores) -> np.ndarray:
    return scores.member_normalized()


def _uniform_knob(
    budget: Budget, groups: list[Group], scores: Mapping[int, UnitScores], _: CostModel
) -> Knob:
    def kept(position: float) -> dict[int, int]:
        ratio = position * budget.max_group_ratio
        found = {}
        for g in groups:
            removed = min(int(np.floor(ratio * g.size + 1e-9)), budget.max_removed(g))
            found[g.id] = budget.aligned(g, g.size - removed)
        return found

    return kept


def _global_knob(budget: Budget, groups: list[Group], scores: Mapping[int, UnitScores], _: CostModel) -> Knob:
    """One threshold over every unit's score relative to its group's mean score."""
    relative = {}
    for g in groups:
        s = _ranking(scores[g.id])
        mean = float(s.mean()) if len(s) else 0.0
        relative[g.id] = np.sort(s / mean) if mean > 0 else np.zeros(g.size)
    top = max((float(r[-1]) for r in relative.values() if len(r)), default=0.0) or 1.0

    def kept(position: float) -> dict[int, int]:
        threshold = position * top * (1 + 1e-9)
        found = {}
        for g in groups:
            below = int(np.searchsorted(relative[g.id], threshold, side="left"))
            found[g.id] = budget.aligned(g, g.size - min(below, budget.max_removed(g)))
        return found

    return kept


def _sensitivity_knob(
    budget: Budget, groups: list[Group], scores: Mapping[int, UnitScores], costs: CostModel
) -> Knob:
    """A price on fidelity loss: every group takes the measured ratio that minimises
    ``loss - price * saving`` (its loss on its curve, the metric it saves alone by the cost
    model), the price rising with the knob: the least summed loss for the saving (a Lagrangian
    relaxation of the knapsack). The search then checks the combined cost exactly, since groups
    sharing a layer save less together than apart."""
    curves = budget.sensitivity or {}
    options: dict[int, list[tuple[int, float, float]]] = {}
    for g in groups:
        found = [(g.size, 0.0, 0.0)]
        for ratio, loss in curves.get(g.id, ()):
            removed = min(int(np.floor(ratio * g.size + 1e-9)), budget.max_removed(g))
            kept = budget.aligned(g, g.size - removed)
            if kept < g.size:
                found.append((kept, float(loss), costs.full - costs.cost({g.id: kept})))
        options[g.id] = found
    rates = [loss / saved for opts in options.values() for _, loss, saved in opts if saved > 0 and loss > 0]
    scale = float(np.median(rates)) if rates else 1.0

    def kept(position: float) -> dict[int, int]:
        price = scale * position / max(1.0 - position, 1e-9)
        return {
            gid: min(opts, key=lambda o: (o[1] - price * o[2], -o[2]))[0] for gid, opts in options.items()
        }

    return kept


_KNOBS: dict[str, Callable[[Budget, list[Group], Mapping[int, UnitScores], CostModel], Knob]] = {
    "uniform": _uniform_knob,
    "global": _global_knob,
    "sensitivity": _sensitivity_knob,
}


def _search(knob: Knob, costs: CostModel, asked: float) -> tuple[dict[int, int], float]:
    """Bisect the knob for the kept counts whose cost fraction is closest to `asked`."""
    lo, hi = 0.0, 1.0
    best = (knob(0.0), costs.fraction(knob(0.0)))
    if best[1] <= asked:
        return best
    at_hi = knob(1.0)
    candidates = [best, (at_hi, costs.fraction(at_hi))]
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        counts = knob(mid)
        fraction = costs.fraction(counts)
        candidates.append((counts, fraction))
        if fraction > asked:
            lo = mid
        else:
            hi = mid
    return min(candidates, key=lambda c: (abs(c[1] - asked), c[1]))


def _refine(
    budget: Budget, groups: list[Group], start: tuple[dict[int, int], float], costs: CostModel
) -> tuple[dict[int, int], float]:
    """Move single alignment steps (one group at a time) while that brings the cost closer to
    the budget: the knob's steps are coarse where few groups share the cost."""
    asked, counts, fraction = float(budget.keep), dict(start[0]), start[1]
    for _ in range(_REFINE_STEPS):
        if abs(fraction - asked) <= budget.tolerance * asked / 2:
            break
        best = None
        for g in groups:
            moved = _step(budget, g, counts.get(g.id, g.size), down=fraction > asked)
            if moved is None:
                continue
            trial = costs.fraction({**counts, g.id: moved})
            if best is None or abs(trial - asked) < abs(best[2] - asked):
                best = (g.id, moved, trial)
        if best is None or abs(best[2] - asked) >= abs(fraction - asked):
            break
        counts[best[0]], fraction = best[1], best[2]
    return counts, fraction


def _step(budget: Budget, group: Group, kept: int, *, down: bool) -> int | None:
    """`kept` one alignment step down (within the group's limit) or up (within its size)."""
    step = budget.step(group)
    moved = kept - step if down else min(kept + step, group.size)
    if down and moved < group.size - budget.max_removed(group):
        return None
    return None if moved == kept else budget.aligned(group, moved)


def _why_missed(budget: Budget, predicted: float, reachable: float) -> str:
    if budget.keep < reachable:
        return (
            f"{budget.metric} cannot go below {reachable:.3f} of the original: no group loses more than "
            f"{budget.max_group_ratio:.0%} of its units (--max-group-ratio) and pinned groups keep all "
            "of theirs; the nearest reachable is kept"
        )
    return (
        f"{budget.metric} lands at {predicted:.3f}, not {budget.keep:.3f}: no group can keep one step "
        f"more or fewer (--round-to {budget.round_to}, else single units) without moving further away"
    )
