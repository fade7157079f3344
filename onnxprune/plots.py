"""PNG plots of sensitivity curves and of a sweep's speedup against fidelity (matplotlib, Agg).

matplotlib is the optional extra `onnxprune[plot]`; without it, plotting raises a UsageError
that says how to install it (tables and JSON need nothing).

>>> plot_sensitivity(report, "resnet_sensitivity.png")  # doctest: +SKIP
PosixPath('resnet_sensitivity.png')
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from onnxprune.errors import UsageError
from onnxprune.group_sensitivity import SensitivityReport
from onnxprune.sweep import SweepReport, TrialRow

NAMED_WORST = 5
"""Sensitivity curves drawn in colour and named in the legend; the rest are thin grey lines."""


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display); UsageError without it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise UsageError("plots need matplotlib: pip install 'onnxprune[plot]'") from exc
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot_sensitivity(report: SensitivityReport, path: str | os.PathLike) -> Path:
    """One curve per group: fidelity lost (1 - cosine) against the ratio removed; the
    `NAMED_WORST` groups that lose most are coloured and named."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    worst = {c.group for c in report.worst(NAMED_WORST)}
    for curve in report.curves:
        xs = [0.0] + [p.ratio for p in curve.points if p.loss is not None]
        ys = [0.0] + [p.loss for p in curve.points if p.loss is not None]
        if curve.group in worst:
            label = f"group {curve.group} ({curve.size}): {_short(curve.name)}"
            ax.plot(xs, ys, marker="o", linewidth=2, label=label, zorder=3)
        else:
            ax.plot(xs, ys, color="0.7", linewidth=0.8, zorder=1)
    ax.set_xlabel("ratio of the group's units removed (that group alone)")
    ax.set_ylabel("fidelity lost: 1 - cosine of outputs")
    ax.set_title(
        f"sensitivity of {Path(report.source).name} ({len(report.curves)} groups, {report.criterion})"
    )
    ax.grid(alpha=0.3)
    if worst:
        ax.legend(fontsize=7, loc="upper left", title=f"the {len(worst)} worst")
    return _save(fig, plt, path)


def plot_pareto(report: SweepReport, path: str | os.PathLike) -> Path:
    """Each successful trial as a point, speedup (measured; the MACs ratio when not benched)
    against fidelity (cosine), labelled by its settings; the Pareto front joined by a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points = [(speed, row.cosine, row) for row in report.rows if (speed := row_speedup(row)) and row.cosine]
    measured = any(row.speedup is not None for _, _, row in points)
    varying = varying_keys([row.spec for row in report.rows])
    for x, y, row in points:
        ax.scatter([x], [y], color="tab:blue" if row.valid is not False else "tab:red", zorder=3)
        label = ", ".join(f"{k}={row.spec.get(k)}" for k in varying) or f"#{row.index}"
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto_front([(x, y) for x, y, _ in points])
    if front:
        ax.plot(*zip(*front, strict=True), color="tab:orange", linewidth=1.5, label="Pareto front", zorder=2)
        ax.legend(loc="lower left")
    failed = sum(1 for row in report.rows if not row.ok)
    ax.set_xlabel("speedup (measured ONNX Runtime latency)" if measured else "ideal speedup (MACs ratio)")
    ax.set_ylabel("fidelity: cosine of outputs to the original")
    ax.set_title(
        f"sweep of {Path(report.source).name}: {len(report.rows)} trials"
        + (f", {failed} failed (not drawn)" if failed else "")
    )
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def varying_keys(specs: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ between specs (what labels a point), in first-seen order.

    >>> varying_keys([{"ratio": 0.2, "round_to": 8}, {"ratio": 0.4, "round_to": 8}])
    ['ratio']
    """
    keys = list(dict.fromkeys(k for spec in specs for k in spec))
    return [k for k in keys if len({repr(spec.get(k)) for spec in specs}) > 1]


def row_speedup(row: TrialRow) -> float | None:
    """The measured speedup of a trial, else its ideal (MACs) speedup."""
    return row.speedup if row.speedup is not None else row.ideal_speedup


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (higher is better), by increasing x.

    >>> pareto_front([(1.0, 0.99), (1.5, 0.9), (1.2, 0.8), (2.0, 0.95)])
    [(1.0, 0.99), (2.0, 0.95)]
    """
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front[::-1]


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _save(fig: Any, plt: Any, path: str | os.PathLike) -> Path:
    out = Path(path)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["pareto_front", "plot_pareto", "plot_sensitivity", "pyplot", "varying_keys"]
