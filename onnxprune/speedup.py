"""Prune to a measured speedup: allocate under the latency model, measure, allocate again.

The latency model (`onnxprune.latency`) predicts the pruned model's time from per-node profiles;
the prediction is then checked the only way that counts: the pruned model and the original are
timed interleaved in ONNX Runtime with the same session settings (`onnxprune.bench`). When the
measured speedup misses the target by more than `tolerance`, the latency budget is corrected by
the ratio of measured to predicted time and the allocation repeats (NetAdapt's loop of proposing
and measuring), at most `attempts` times; the attempt closest to the target is returned, and the
report says whether the target was met and, if not, the nearest reached and why.

>>> result = prune("resnet50.onnx", target_speedup=2.0)  # doctest: +SKIP
>>> result.report.budget["measured_speedup"]  # doctest: +SKIP
1.97
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from onnxprune.bench import benchmark
from onnxprune.io import ModelLike
from onnxprune.session import PruneOptions

if TYPE_CHECKING:
    from onnxprune.pipeline import PruneResult

DEFAULT_ATTEMPTS = 4
DEFAULT_TOLERANCE = 0.05
BENCH_RUNS = 40


def prune_to_speedup(
    run: Callable[[PruneOptions], PruneResult],
    options: PruneOptions,
    original: ModelLike,
    speedup: float,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> PruneResult:
    """Run `run(options)` with latency budgets until the measured speedup of the result over
    `original` is within `tolerance` (relative) of `speedup`; see the module docstring."""
    budget = options.target
    keep, costs = float(budget.keep), options.cost_model
    tried: list[dict] = []
    best: tuple[float, PruneResult] | None = None
    for _ in range(attempts):
        asked = dataclasses.replace(options, target=dataclasses.replace(budget, keep=keep), cost_model=costs)
        result = run(asked)
        costs = result.costs
        measured = benchmark(
            original,
            result.model,
            runs=BENCH_RUNS,
            threads=options.threads or 2,
            batch=options.batch,
            input_shapes=options.input_shapes,
        ).speedup
        predicted = result.report.budget["predicted"]
        tried.append(
            {
                "latency_budget": round(keep, 6),
                "predicted_speedup": round(1 / predicted, 4),
                "measured_speedup": round(measured, 4),
            }
        )
        if best is None or abs(measured - speedup) < abs(best[0] - speedup):
            best = (measured, result)
        if abs(measured - speedup) <= tolerance * speedup:
            break
        corrected = max(_next_budget(tried, 1.0 / speedup), result.report.budget["reachable"])
        if abs(corrected - keep) < 1e-4:
            break  # the budget cannot move further (the caps hold every group at its limit)
        keep = min(corrected, 1.0)
    measured, result = best
    _record(result, speedup, measured, tried, tolerance)
    return result


def _next_budget(tried: list[dict], wanted: float) -> float:
    """The latency budget to try next for a measured time fraction `wanted`: interpolated between
    the two tried budgets whose measured fractions bracket it, else the last budget corrected by
    its measured / predicted ratio."""
    points = sorted((t["latency_budget"], 1.0 / t["measured_speedup"]) for t in tried)
    for (b0, m0), (b1, m1) in itertools.pairwise(points):
        if m0 <= wanted <= m1 and m1 > m0:
            return b0 + (wanted - m0) / (m1 - m0) * (b1 - b0)
    last = tried[-1]
    return wanted / ((1.0 / last["measured_speedup"]) / (1.0 / last["predicted_speedup"]))


def _record(result: PruneResult, asked: float, measured: float, tried: list[dict], tolerance: float) -> None:
    summary = result.report.budget
    summary.update(asked_speedup=asked, measured_speedup=round(measured, 4), attempts=tried)
    summary["achieved"] = round(1 / measured, 6)
    if abs(measured - asked) <= tolerance * asked:
        summary.pop("note", None)
    else:
        reach = 1 / summary["reachable"]
        summary["note"] = (
            f"measured speedup {measured:.2f}, not {asked:.2f}, after {len(tried)} attempt(s); the latency "
            f"model predicts at most {reach:.2f} with no group losing more than the cap (--max-group-ratio)"
            + ("" if reach >= asked else ": the target is out of reach with these caps and pinned groups")
        )
