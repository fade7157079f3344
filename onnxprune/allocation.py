"""Per-group ratios from sensitivity curves: the least total fidelity loss under a MACs budget.

Each group takes one of its measured ratios (or none); a choice costs the fidelity loss its
point measured (1 - cosine, `SensitivityPoint.loss`) and removes the MACs it measured
(`delta_macs`). Losses and savings are taken as additive over groups: for the MACs this is on
the safe side (removing channels on both sides of a layer saves the product, more than the
sum of what each saved alone), so the pruned model's MACs are at most the budget's estimate; for
the losses it is the usual first-order assumption of sensitivity-based allocation (the real loss
of the combination is measured by pruning it). The choice is a multiple-choice knapsack, solved
by dynamic programming over the MACs to remove in at most `resolution` steps: exactly when
there are no more MACs to remove than steps; otherwise each point's saving is rounded down to
a step, so the budget still holds on the measured figures and the loss is the least to within
that rounding.

>>> from onnxprune.group_sensitivity import GroupCurve, SensitivityPoint, SensitivityReport
>>> def curve(gid, points):
...     pts = [SensitivityPoint(r, 0, cosine=c, delta_macs=d) for r, c, d in points]
...     return GroupCurve(gid, f"g{gid}", "channels", 8, pts)
>>> report = SensitivityReport("m", "random feeds", "l1", 1, [0.25, 0.5], 100, None, 0, [
...     curve(0, [(0.25, 0.99, 10), (0.5, 0.90, 20)]),
...     curve(1, [(0.25, 0.999, 10), (0.5, 0.995, 20)])])
>>> allocate_by_sensitivity(report, macs_budget=75)
{0: 0.25, 1: 0.5}
"""

from __future__ import annotations

import numpy as np

from onnxprune.errors import UsageError
from onnxprune.group_sensitivity import GroupCurve, SensitivityReport

MAX_RESOLUTION = 100_000


def allocate_by_sensitivity(
    curves: SensitivityReport, macs_budget: int, *, resolution: int = 10_000
) -> dict[int, float]:
    """Per-group ratios {group id: ratio} (groups left whole are absent) whose summed measured
    fidelity loss is least among the choices whose MACs, estimated as `curves.macs_before` minus
    the summed `delta_macs`, are at most `macs_budget` (an absolute MAC count: for a fraction f of
    the original, pass `int(f * curves.macs_before)`). Points that failed are never chosen.

    UsageError when the curves cannot reach the budget (it names the least MACs they reach) or
    carry no MAC counts.
    """
    if curves.macs_before is None:
        raise UsageError("the sensitivity report has no MAC counts (shapes unknown): cannot allocate MACs")
    need = int(curves.macs_before) - int(macs_budget)
    if need <= 0:
        return {}
    options = [_choices(c) for c in curves.curves]
    reachable = sum(max((saved for _, saved, _ in opts), default=0) for opts in options)
    if reachable < need:
        raise UsageError(
            f"MACs budget {macs_budget:,} is out of reach: pruning every group at its largest "
            f"measured ratio leaves {curves.macs_before - reachable:,} of {curves.macs_before:,} MACs"
        )
    resolution = min(resolution, need)
    step = need / resolution
    best, picks = np.zeros(resolution + 1), []
    best[1:] = np.inf  # best[b]: least loss that removes at least b steps (b capped at resolution)
    for opts in options:
        best, pick = _add_group(best, opts, step)
        picks.append(pick)
    if not np.isfinite(best[resolution]):  # rounding each saving down lost the last steps
        if resolution >= MAX_RESOLUTION:
            raise UsageError(f"MACs budget {macs_budget:,} is only just in reach: give a little more")
        return allocate_by_sensitivity(curves, macs_budget, resolution=resolution * 10)
    return _trace(curves.curves, options, picks, step, resolution)


def _choices(curve: GroupCurve) -> list[tuple[float, int, float]]:
    """(ratio, MACs removed, loss) of each usable point of a curve."""
    return [
        (p.ratio, int(p.delta_macs), float(p.loss))
        for p in curve.points
        if p.loss is not None and p.delta_macs is not None and p.delta_macs > 0
    ]


def _add_group(
    best: np.ndarray, opts: list[tuple[float, int, float]], step: float
) -> tuple[np.ndarray, np.ndarray]:
    """One knapsack step: the best losses with this group added, and which option each took
    (-1: the group stays whole)."""
    top = len(best) - 1
    new, pick = best.copy(), np.full(len(best), -1)
    for index, (_, saved, loss) in enumerate(opts):
        steps = min(top, int(saved // step))
        # reaching b with this option: from max(b - steps, 0) before it
        source = best[np.maximum(np.arange(top + 1) - steps, 0)] + loss
        better = source < new
        new[better], pick[better] = source[better], index
    return new, pick


def _trace(
    curves: list[GroupCurve],
    options: list[list[tuple[float, int, float]]],
    picks: list[np.ndarray],
    step: float,
    top: int,
) -> dict[int, float]:
    """Walk the knapsack's choices back from the full budget."""
    chosen: dict[int, float] = {}
    b = top
    for curve, opts, pick in zip(reversed(curves), reversed(options), reversed(picks), strict=True):
        index = int(pick[b])
        if index >= 0:
            ratio, saved, _ = opts[index]
            chosen[curve.group] = ratio
            b = max(b - min(top, int(saved // step)), 0)
    return dict(sorted(chosen.items()))


__all__ = ["allocate_by_sensitivity"]
