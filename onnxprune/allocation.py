"""Per-group ratios from sensitivity curves: the least total fidelity loss under a MACs budget.

Each group takes one of its measured ratios (or none); a choice costs the fidelity loss its
point measured (1 - cosine, `SensitivityPoint.loss`) and removes MACs. Losses are taken as
additive over groups (the usual first-order assumption of sensitivity-based allocation; the real
loss of the combination is measured by pruning it). Savings are not: two groups on either side
of one layer save less together than the sum of what each saved alone (a conv keeping half its
inputs and half its outputs keeps a quarter of its MACs, not none). So the choice is made on the
summed savings (`delta_macs`), a multiple-choice knapsack solved by dynamic programming, and then
checked on the exact MACs of the combination (`onnxprune.costs.MacsCost`, the cost model the
report carries); while those are over the budget, the knapsack is asked for more savings
(bisection) until they are not. Without a cost model (a report read back from JSON), only the
summed savings are used: the model may then keep more MACs than the budget.

The knapsack works in at most `resolution` steps of MACs: exactly when there are no more MACs
to remove than steps; otherwise each point's saving is rounded down to a step.

>>> from onnxprune.group_sensitivity import GroupCurve, SensitivityPoint, SensitivityReport
>>> def curve(gid, points):
...     pts = [SensitivityPoint(r, 0, cosine=c, delta_macs=d) for r, c, d in points]
...     return GroupCurve(gid, f"g{gid}", "channels", 8, pts)
>>> report = SensitivityReport("m", "random feeds", "l1", 1, [0.25, 0.5], 100, None, 0, [
...     curve(0, [(0.25, 0.99, 10), (0.5, 0.90, 20)]),
...     curve(1, [(0.25, 0.999, 10), (0.5, 0.995, 20)])])
>>> allocate_by_sensitivity(report, macs_budget=75)  # no cost model: summed savings
{0: 0.25, 1: 0.5}
"""

from __future__ import annotations

import numpy as np

from onnxprune.costs import CostModel
from onnxprune.errors import UsageError
from onnxprune.group_sensitivity import GroupCurve, SensitivityReport

MAX_RESOLUTION = 100_000


def allocate_by_sensitivity(
    curves: SensitivityReport,
    macs_budget: int,
    *,
    cost: CostModel | None = None,
    resolution: int = 10_000,
) -> dict[int, float]:
    """Per-group ratios {group id: ratio} (groups left whole are absent) whose MACs are at most
    `macs_budget` (an absolute MAC count: for a fraction f of the original, pass
    `int(f * curves.macs_before)`), chosen for the least summed measured fidelity loss. MACs are
    checked exactly on `cost` (default: the cost model `onnxprune.sensitivity` put in the
    report): the result is the least-loss choice of the smallest summed saving whose exact MACs
    fit, which may leave some budget unused (the ratios are the few measured ones). Without a
    cost model, see the module's note. Points that failed are never chosen. Apply the
    result with `prune(model, target=GroupRatios.of(ratios))`.

    UsageError when the curves cannot reach the budget (it names the least MACs they reach) or
    carry no MAC counts.
    """
    cost = cost if cost is not None else curves.cost
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
    chosen = _knapsack(curves.curves, options, need, resolution)
    if cost is None:
        return chosen
    return _within_exact_budget(curves, options, cost, macs_budget, (need, reachable, chosen), resolution)


def _within_exact_budget(
    curves: SensitivityReport,
    options: list[list[tuple[float, int, float]]],
    cost: CostModel,
    budget: int,
    start: tuple[int, int, dict[int, float]],
    resolution: int,
) -> dict[int, float]:
    """The knapsack's choice for the least summed saving (bisected between `need` and
    `reachable`) whose exact MACs on `cost` are within `budget`."""
    kept = {c.group: {p.ratio: p.kept for p in c.points} for c in curves.curves}

    def macs(chosen: dict[int, float]) -> float:
        return cost.cost({g: kept[g][r] for g, r in chosen.items()})

    lo, hi, chosen = start
    if macs(chosen) <= budget:
        return chosen
    best = _knapsack(curves.curves, options, hi, resolution)
    if macs(best) > budget:
        raise UsageError(
            f"MACs budget {budget:,} is out of reach: pruning every group at its largest measured "
            f"ratio leaves {macs(best):,.0f} of {curves.macs_before:,} MACs"
        )
    lo += 1
    while lo < hi:
        mid = (lo + hi) // 2
        trial = _knapsack(curves.curves, options, mid, resolution)
        if macs(trial) <= budget:
            best, hi = trial, mid
        else:
            lo = mid + 1
    return best


def _knapsack(
    curves: list[GroupCurve], options: list[list[tuple[float, int, float]]], need: int, resolution: int
) -> dict[int, float]:
    """The least-loss choice whose summed savings are at least `need` MACs (at most the largest
    summed saving)."""
    resolution = min(resolution, need)
    step = need / resolution
    best, picks = np.zeros(resolution + 1), []
    best[1:] = np.inf  # best[b]: least loss that removes at least b steps (b capped at resolution)
    for opts in options:
        best, pick = _add_group(best, opts, step)
        picks.append(pick)
    if not np.isfinite(best[resolution]):  # rounding each saving down lost the last steps
        if resolution < MAX_RESOLUTION:
            return _knapsack(curves, options, need, resolution * 10)
        # only the largest savings reach it: every group at its largest saving does
        return {
            c.group: max(opts, key=lambda o: o[1])[0] for c, opts in zip(curves, options, strict=True) if opts
        }
    return _trace(curves, options, picks, step, resolution)


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
