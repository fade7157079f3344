"""`compensate`: make the kept weights of a structurally pruned model track the original.

Two methods (the design card's *compensate* stage; issue 14):

- ``bias``: the removed channels' mean contribution is folded into each consumer's bias (FLAP
  style), b' = b + Σ_{c removed} W[:, c]·mean(x_c), means from the original model on `data`, or
  without data from BatchNormalization parameters (`means.channel_means`).
- ``lsq``: level by level in topological order, each consumer's original input x is fitted as an
  affine function of the input x' the pruned model (compensated so far) really gives it, with a
  ridge toward the uncompensated map (`solve.ridge_map`), and the fit is folded into its kept
  weights and bias (`fold.fold`). Errors are therefore corrected where they arise, not
  compounded. λ is chosen on held-out samples.

Held-out samples: `holdout` if given, else every 4th feed of `data` (feeds 3, 7, 11, ...); with
fewer than 4 feeds nothing is held out and the fit data also judge (the report notes it). A
consumer keeps a compensation only if its held-out output error is not above that of none; lsq
then refits the chosen candidate on the fit and held-out samples together.

Cost: ``bias`` runs the original model once over the fit data and both models once over the
held-out data, each exposing every consumer input at once (peak memory: those tensors for one
batch). ``lsq`` runs both models once per dependency level over all the data, each cut to the
nodes that level needs (`collect.prefix_model`), so a deep chain costs about one model run per
level; memory holds one level's inputs for one batch and C+K square sums per consumer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

from onnxprune.calibration import SplitLoader, reiterable
from onnxprune.compensate.collect import input_means, pair_stats
from onnxprune.compensate.consumers import Consumer, Dim, find_consumers, levels, original_w3
from onnxprune.compensate.fold import fold
from onnxprune.compensate.means import channel_means
from onnxprune.compensate.solve import (
    ALPHAS,
    AffineMap,
    PairStats,
    bias_map,
    identity_map,
    output_error,
    ridge_map,
    tap_weighting,
)
from onnxprune.compensate.taps import coverage
from onnxprune.data import DataLoader, open_data
from onnxprune.errors import UsageError
from onnxprune.plan import TensorUpdate

HOLDOUT_EVERY = 4


@dataclass(frozen=True)
class ConsumerRecord:
    """What compensation did to one consumer. Errors are held-out output errors relative to the
    consumer's original output energy (tr(P·R) / tr(P·E[xxᵀ]), see `solve.output_error`)."""

    node: str
    op: str
    applied: str | None
    reason: str = ""
    error_before: float | None = None
    error_after: float | None = None
    alpha: float | None = None
    level: int | None = None


@dataclass
class CompensationReport:
    """The updates to list in the plan, one record per consumer, and the wall time in seconds."""

    method: str
    updates: list[TensorUpdate] = field(default_factory=list)
    consumers: list[ConsumerRecord] = field(default_factory=list)
    seconds: float = 0.0
    model_runs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return sum(1 for r in self.consumers if r.applied)

    def __str__(self) -> str:
        lines = [
            f"compensation {self.method}: {self.applied}/{len(self.consumers)} consumers, "
            f"{len(self.updates)} tensors updated, {self.model_runs} model runs, {self.seconds:.2f} s"
        ]
        for r in self.consumers:
            errs = ""
            if r.error_before is not None and r.error_after is not None:
                errs = f" held-out error {r.error_before:.4g} -> {r.error_after:.4g}"
            lines.append(f"  {r.op} {r.node}: {r.applied or 'skipped'}{errs} {r.reason}".rstrip())
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def compensate(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    keeps: Mapping[Dim, np.ndarray],
    data: DataLoader | None,
    *,
    method: Literal["bias", "lsq"],
    holdout: DataLoader | None = None,
    threads: int = 2,
) -> CompensationReport:
    """Compensate `pruned` (modified in place) for the channels `keeps` removed from `original`.

    `original` is the normalized unpruned model (the tensor names of `pruned`); `keeps` maps
    (tensor, axis) to kept indices for every axis that lost positions. Returns the report, whose
    `updates` go into the plan (`dataclasses.replace(plan, updates=tuple(report.updates))`).
    """
    if method not in ("bias", "lsq"):
        raise UsageError(f"compensation method must be 'bias' or 'lsq', not {method!r}")
    start = time.perf_counter()
    report = CompensationReport(method)
    found, skipped = find_consumers(original, pruned, keeps)
    report.consumers += [ConsumerRecord(s.node, s.op, None, s.reason) for s in skipped]
    if method == "lsq" and data is None:
        raise UsageError("lsq compensation needs calibration data (use 'bias' without data)")
    if data is None:
        _bias_without_data(original, pruned, found, report)
    else:
        fit, judge = _split(reiterable(open_data(data)), holdout, report)
        run = _bias_with_data if method == "bias" else _lsq
        run(original, pruned, found, fit, judge, threads, report)
    report.seconds = time.perf_counter() - start
    return report


def _split(data: DataLoader, holdout: DataLoader | None, report: CompensationReport):
    if holdout is not None:
        return data, reiterable(open_data(holdout))
    return SplitLoader(data, HOLDOUT_EVERY, held_out=False), SplitLoader(data, HOLDOUT_EVERY, held_out=True)


def _cover(c: Consumer, shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    """Tap coverage of a Conv consumer at the input shape seen (None for Gemm/MatMul)."""
    if c.op != "Conv":
        return None
    shape = shapes.get(c.x)
    return coverage(dict(c.conv), c.kernel, None if shape is None else tuple(shape[2:]))


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes recorded in the model's value_info (for data-free compensation)."""
    found = {}
    for info in model.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            found[info.name] = tuple(d.dim_value for d in dims)
    return found


def _bias_without_data(original, pruned, found: list[Consumer], report: CompensationReport) -> None:
    report.notes.append("no data: means from BatchNormalization parameters (data-free)")
    shapes = _static_shapes(original)
    for c in found:
        means = channel_means(original, c.x, c.channels) if c.axis == 1 else np.full(c.channels, np.nan)
        removed = np.setdiff1d(np.arange(c.channels), c.kept)
        if np.isnan(means[removed]).any():
            reason = (
                "data-free: the removed channels' mean is unknown (producer is not BatchNormalization[+Relu])"
            )
            report.consumers.append(ConsumerRecord(c.node, c.op, None, reason))
            continue
        affine = bias_map(c.channels, c.kept, means)
        report.updates += fold(original, pruned, c, affine, "compensate-bias", _cover(c, shapes))
        report.consumers.append(ConsumerRecord(c.node, c.op, "bias", "data-free"))


def _judge(
    c: Consumer, original, candidates: dict[str, AffineMap], held: PairStats | None, cover
) -> tuple[str, float | None, float | None]:
    """The candidate with the lowest held-out error, never worse than none: (name, before, after)."""
    if held is None or held.stats.count == 0:
        return next(iter(candidates)), None, None
    weighting = tap_weighting(original_w3(c, original), c.scale, cover)
    errors = {}
    energy = 1.0
    for name, affine in candidates.items():
        errors[name], energy = output_error(held, affine, weighting)
    energy = max(energy, 1e-30)
    best = min(errors, key=lambda k: (errors[k], k != "none"))
    return best, errors["none"] / energy, errors[best] / energy


def _bias_with_data(original, pruned, found, fit, judge, threads, report: CompensationReport) -> None:
    if not found:
        return
    shapes: dict[str, tuple[int, ...]] = {}
    means = input_means(original, found, fit, threads, shapes)
    if not means:
        raise UsageError("no calibration samples: the data yielded no feeds to fit on")
    (held,) = pair_stats(original, pruned, found, [judge], threads, shapes)
    report.model_runs += 3
    _note_empty(held, report)
    for c in found:
        none = AffineMap(identity_map(c.channels, c.kept), np.zeros(c.channels))
        candidates = {"bias": bias_map(c.channels, c.kept, means[c.x].mean), "none": none}
        cover = _cover(c, shapes)
        best, before, after = _judge(c, original, candidates, held.get(c.output), cover)
        if best != "none":
            report.updates += fold(original, pruned, c, candidates[best], "compensate-bias", cover)
        reason = "" if best != "none" else "reverted: bias made held-out samples worse"
        applied = None if best == "none" else "bias"
        report.consumers.append(ConsumerRecord(c.node, c.op, applied, reason, before, after))


def _note_empty(held: dict, report: CompensationReport) -> None:
    note = "no held-out feeds: compensations were judged on the fit data"
    if not held and note not in report.notes:
        report.notes.append(note)


def _candidates(c: Consumer, pair: PairStats) -> dict[str, AffineMap]:
    """Every map the held-out samples choose from: lsq at each α, bias alone, none."""
    candidates = {f"lsq:{a:g}": ridge_map(pair, c.kept, a) for a in ALPHAS}
    candidates["bias"] = bias_map(c.channels, c.kept, pair.moments()[0][: c.channels])
    candidates["none"] = AffineMap(identity_map(c.channels, c.kept), np.zeros(c.channels))
    return candidates


def _lsq(original, pruned, found, fit, judge, threads, report: CompensationReport) -> None:
    """Level by level: fit on `fit`, choose on `judge`, refit the choice on both, fold."""
    for depth, level in enumerate(levels(pruned, found)):
        shapes: dict[str, tuple[int, ...]] = {}
        stats, held = pair_stats(original, pruned, level, [fit, judge], threads, shapes)
        report.model_runs += 4
        _note_empty(held, report)
        for c in level:
            if c.output not in stats:
                report.consumers.append(ConsumerRecord(c.node, c.op, None, "no calibration feeds"))
                continue
            pair, cover = stats[c.output], _cover(c, shapes)
            judged = held.get(c.output)
            candidates = _candidates(c, pair)
            best, before, after = _judge(c, original, candidates, judged or pair, cover)
            if best != "none":
                chosen = candidates[best]
                if judged is not None:  # the choice made, refit it on every sample
                    chosen = _candidates(c, pair.merge(judged))[best]
                by = "compensate-bias" if best == "bias" else "compensate-lsq"
                report.updates += fold(original, pruned, c, chosen, by, cover)
            alpha = float(best.split(":")[1]) if best.startswith("lsq:") else None
            applied = None if best == "none" else best.split(":")[0]
            reason = "" if applied else "reverted: every fit made held-out samples worse"
            report.consumers.append(
                ConsumerRecord(c.node, c.op, applied, reason, before, after, alpha, depth)
            )
