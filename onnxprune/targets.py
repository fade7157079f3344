"""Targets: how many units of each coupling group stay, and which ones.

A target receives the analysis and the scores the importance gave, and returns `Decisions`
(group id -> sorted kept units). It also says which groups it needs scores for, so a target that
leaves a group whole never has its weights read. Today: `UniformRatio` (the same ratio for every
group, heads apart) and `ReplayPlan` (the units a saved plan keeps); the budgeted targets
(global ratio, MACs, params, latency) are further subclasses.

>>> target = UniformRatio(ratio=0.4, round_to=8)
>>> target.kept(64, "channels"), target.kept(12, "heads")
(40, 8)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxprune.analysis import DependencyAnalysis, Group
from onnxprune.costs import CostModel
from onnxprune.errors import PlanError, UsageError
from onnxprune.importance import UnitScores
from onnxprune.plan import Plan

Decisions = dict[int, np.ndarray]
"""Group id -> sorted indices of the units kept (only groups that lose units)."""

DEFAULT_ROUND_TO = 8
"""Kept channel counts default to multiples of 8: ONNX Runtime's CPU kernels lose much of the
gain on odd counts (benchmarks/README.md). Groups under twice this size are not aligned."""


def kept_count(size: int, ratio: float, round_to: int = 1) -> int:
    """How many of `size` units stay at `ratio`, rounded *up* to a multiple of `round_to` when
    the group has at least 2 * `round_to` units (smaller groups cannot be aligned usefully):
    rounding never removes more than asked, so a group whose removal rounds to nothing stays whole.

    >>> kept_count(64, 0.4), kept_count(64, 0.4, round_to=8), kept_count(32, 0.4, round_to=8)
    (39, 40, 24)
    >>> kept_count(6, 0.4, round_to=8), kept_count(32, 0.1, round_to=8)
    (4, 32)
    """
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"ratio {ratio} is outside [0, 1)")
    if round_to < 1:
        raise UsageError(f"round_to {round_to} must be >= 1")
    keep = size - int(np.floor(ratio * size + 1e-9))
    if round_to > 1 and size >= 2 * round_to and keep < size:  # ratio 0 never removes anything
        keep = min(-(-keep // round_to) * round_to, size)  # the next multiple up
    return max(keep, 1)


def top_units(scores: np.ndarray, keep: int) -> np.ndarray:
    """The sorted indices of the `keep` highest scores (ties: the lower index stays)."""
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:keep])


class Target(ABC):
    """What to keep of each group. Subclasses are frozen dataclasses of their settings. A target
    that `needs_costs` (a budget) is handed the cost model of its metric (`onnxprune.costs`)."""

    needs_costs: ClassVar[bool] = False

    @abstractmethod
    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        """The groups whose scores `select` reads (in analysis order)."""

    @abstractmethod
    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        """The kept units of every group that loses some."""


@dataclass(frozen=True)
class UniformRatio(Target):
    """Remove `ratio` of the units of every prunable group; head groups (`Group.kind`) lose
    `head_ratio` (default `ratio`) of their heads, without rounding. Kept channel counts are
    multiples of `round_to` (`kept_count`). Within a group, units rank by their member-normalized
    score (`UnitScores.member_normalized`): the per-group normalisation is this target's step."""

    ratio: float
    head_ratio: float | None = None
    round_to: int = DEFAULT_ROUND_TO

    def __post_init__(self) -> None:
        for name, value in (("ratio", self.ratio), ("head_ratio", self.head_ratio)):
            if value is not None and not 0.0 <= float(value) < 1.0:
                raise UsageError(f"{name} {value} is outside [0, 1)")
        if int(self.round_to) < 1:
            raise UsageError(f"round_to must be >= 1, got {self.round_to}")

    def kept(self, size: int, kind: str) -> int:
        """How many units of a group of `size` units of `kind` ("heads" or "channels") stay."""
        if kind == "heads":
            return kept_count(size, self.ratio if self.head_ratio is None else self.head_ratio)
        return kept_count(size, self.ratio, int(self.round_to))

    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        return [g for g in analysis.prunable_groups if self.kept(g.size, g.kind) < g.size]

    def rounding_note(self, analysis: DependencyAnalysis) -> str | None:
        """What to tell the user when rounding up leaves groups the ratio would cut whole."""
        whole = self.left_whole(analysis)
        if not whole:
            return None
        smallest = min(g.size for g in whole)
        return (
            f"{len(whole)} group(s) of {smallest}-{max(g.size for g in whole)} channels stay whole: removing "
            f"{self.ratio:g} of them rounds to nothing at --round-to {self.round_to} (kept counts round "
            f"up); --round-to 1, or --ratio {self.round_to / smallest:.2f} or more, prunes them"
        )

    def left_whole(self, analysis: DependencyAnalysis) -> list[Group]:
        """Prunable channel groups the ratio would cut but rounding up to `round_to` keeps whole."""
        if self.ratio <= 0 or int(self.round_to) <= 1:
            return []
        return [
            g
            for g in analysis.prunable_groups
            if g.kind == "channels" and kept_count(g.size, self.ratio) < g.size == self.kept(g.size, g.kind)
        ]

    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        return {
            g.id: top_units(scores[g.id].member_normalized(), self.kept(g.size, g.kind))
            for g in self.groups_to_score(analysis)
        }


@dataclass(frozen=True)
class ReplayPlan(Target):
    """Keep what a saved plan keeps (`--apply-plan`): the units are read back from its weight
    slices; a plan that keeps different units of coupled tensors, or prunes a group this model
    pins, is refused (PlanError)."""

    plan: Plan

    def groups_to_score(self, analysis: DependencyAnalysis) -> list[Group]:
        return []

    def select(
        self, analysis: DependencyAnalysis, scores: Mapping[int, UnitScores], costs: CostModel | None = None
    ) -> Decisions:
        by_key = {(s.tensor, s.axis): s for s in self.plan.slices}
        decisions: Decisions = {}
        for group in analysis.groups:
            kept = _kept_by_plan(group, by_key)
            if kept is not None and len(kept) < group.size:
                if not group.prunable:
                    raise PlanError(
                        f"plan prunes {group.describe()}, which this model pins: "
                        + "; ".join(str(b) for b in group.barriers[:2])
                    )
                decisions[group.id] = kept
        return decisions

    def check(self, derived: Plan) -> None:
        """Refuse when the plan rebuilt from the replayed decisions slices other than the plan."""
        want = {(s.tensor, s.axis): s.keep for s in self.plan.slices if len(s.keep) < s.size}
        got = {(s.tensor, s.axis): s.keep for s in derived.slices}
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                raise PlanError(
                    f"plan does not fit this model: slice of {key[0]} axis {key[1]} "
                    f"{'is not implied by the plan' if key not in want else 'differs from the model'}"
                )


def _kept_by_plan(group: Group, by_key: Mapping) -> np.ndarray | None:
    """The units of `group` the plan's slices of its weight members keep (None: no slice)."""
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
    return kept
