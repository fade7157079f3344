"""Sensitivity curves on a trained model, what allocating by them buys, and what they cost.

    python benchmarks/sensitivity.py [--out benchmarks/sensitivity.md]

1. CREPE tiny (trained, `models/trained/crepe_tiny_dynamo.onnx`), criterion `activation` on its
   calibration frames (`models/trained/data/crepe_calib.npz`): every prunable group alone at
   ratios 0.25 / 0.5 / 0.75; fidelity on the held-out fifth of those frames, latency change over
   10 interleaved runs. Curves in `sensitivity_crepe_tiny.json` / `.png`.
2. Allocation: for MACs budgets equal to what the uniform ratios 0.3, 0.4 and 0.5 leave,
   `allocate_by_sensitivity` picks per-group ratios (with its exact MACs check, and without it:
   summed single-group savings only); the prunes (no compensation) are measured on the
   *evaluation* frames (`crepe_eval.npz`, never calibrated on): output cosine and the MACs left.
3. Cost: ResNet-50 (full width, random weights, `/tmp/onnxprune-bench/resnet50.onnx`): the
   whole analysis (every group at 3 ratios, no latency) against one full `prune()` +
   `check_fidelity` per point, timed on the first 3 points.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from machine import cpu_model, git_state, load_average, ram_gib

from onnxprune import prune
from onnxprune.allocation import allocate_by_sensitivity
from onnxprune.fidelity import check_fidelity
from onnxprune.group_sensitivity import GroupRatios, SingleGroup, sensitivity
from onnxprune.plots import plot_sensitivity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRAINED = ROOT / "models" / "trained"
RATIOS = (0.25, 0.5, 0.75)


def cosine(model: Path, pruned, data: Path) -> float:
    return check_fidelity(model, pruned, data).outputs[0].cosine


def crepe_part(out: Path) -> tuple[list[str], dict]:
    model = TRAINED / "crepe_tiny_dynamo.onnx"
    calib, evaluation = TRAINED / "data" / "crepe_calib.npz", TRAINED / "data" / "crepe_eval.npz"
    report = sensitivity(model, ratios=RATIOS, calibration=calib, latency_runs=10)
    (out.parent / "sensitivity_crepe_tiny.json").write_text(json.dumps(report.to_json(), indent=1))
    plot_sensitivity(report, out.parent / "sensitivity_crepe_tiny.png")
    lines = [
        f"## CREPE tiny: {len(report.curves)} groups x {len(RATIOS)} ratios in {report.seconds:.1f} s",
        "",
        f"Fidelity on {report.fidelity_source}; original median latency {report.latency_ms:.2f} ms. "
        "Worst first (cosine / share of MACs removed / latency change in ms):",
        "",
        "| group | size | " + " | ".join(f"r={r:g}" for r in RATIOS) + " | weights |",
        "|---|---|" + "---|" * len(RATIOS) + "---|",
    ]
    for curve in report.worst(len(report.curves)):
        cells = [
            f"{p.cosine:.4f} / {100 * p.delta_macs / report.macs_before:.1f}% / {p.delta_latency_ms:+.2f}"
            for p in curve.points
        ]
        lines.append(f"| {curve.group} | {curve.size} | " + " | ".join(cells) + f" | {curve.name} |")
    allocation_lines, allocations = allocation_part(model, calib, evaluation, report)
    return [*lines, *allocation_lines], {"report": report.to_json(), "allocations": allocations}


def allocation_part(model: Path, calib: Path, evaluation: Path, report) -> tuple[list[str], dict]:
    """Uniform ratios against allocations by sensitivity at the MACs each uniform ratio leaves;
    the allocation on summed single-group savings alone (no exact check) beside it."""
    lines = [
        "",
        "## Allocation by sensitivity against a uniform ratio (same MACs budget)",
        "",
        "Activation criterion, no compensation; cosine on the evaluation frames (never calibrated on). "
        "'summed only': the allocation without the exact MACs check (`cost=None`).",
        "",
        "| uniform ratio | MACs budget | MACs left: allocated / summed only | eval cosine: uniform / "
        "allocated / summed only | ratios allocated |",
        "|---|---|---|---|---|",
    ]
    found = {}
    summed_only = dataclasses.replace(report, cost=None)
    for ratio in (0.3, 0.4, 0.5):
        uniform = prune(model, ratio=ratio, calibration=calib, compensate="none")
        budget = uniform.report.macs_after
        row = {"budget": budget, "uniform_cosine": cosine(model, uniform.model, evaluation)}
        for label, curves in (("allocated", report), ("summed_only", summed_only)):
            chosen = allocate_by_sensitivity(curves, budget)
            pruned = prune(model, target=GroupRatios.of(chosen), calibration=calib, compensate="none")
            row[label] = {
                "chosen": chosen,
                "macs": pruned.report.macs_after,
                "cosine": cosine(model, pruned.model, evaluation),
            }
        found[ratio] = row
        a, s = row["allocated"], row["summed_only"]
        shown = ", ".join(f"{g}: {r:g}" for g, r in a["chosen"].items())
        lines.append(
            f"| {ratio} | {budget:,} | {a['macs']:,} / {s['macs']:,} | {row['uniform_cosine']:.4f} / "
            f"{a['cosine']:.4f} / {s['cosine']:.4f} | {shown} |"
        )
    return lines, found


def cost_part(model: Path) -> tuple[list[str], dict]:
    start = time.perf_counter()
    report = sensitivity(model, ratios=RATIOS, latency_runs=0)
    whole = time.perf_counter() - start
    points = len(report.curves) * len(RATIOS)
    timed = []
    for curve in report.curves[:3]:
        start = time.perf_counter()
        result = prune(model, target=SingleGroup(curve.group, RATIOS[0]))
        check_fidelity(model, result.model)
        timed.append(time.perf_counter() - start)
    per_full = sum(timed) / len(timed)
    lines = [
        f"## Cost on {model.name}",
        "",
        f"{len(report.curves)} groups x {len(RATIOS)} ratios = {points} points in {whole:.1f} s "
        f"({whole / points:.2f} s a point, the shared load/normalize/analyze/score and the original's "
        f"outputs included); a full `prune()` + `check_fidelity` per point takes {per_full:.2f} s "
        f"(mean of 3), so {points} of them would take about {per_full * points:.0f} s.",
    ]
    return lines, {"points": points, "seconds": whole, "full_prune_point_s": per_full}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "sensitivity.md")
    parser.add_argument("--resnet", type=Path, default=Path("/tmp/onnxprune-bench/resnet50.onnx"))
    args = parser.parse_args()
    load = load_average()
    crepe_lines, crepe = crepe_part(args.out)
    cost_lines, cost = cost_part(args.resnet)
    head = [
        "# Sensitivity",
        "",
        f"Written by `benchmarks/sensitivity.py` on {cpu_model()}, {ram_gib():.0f} GiB, 2 cores shared "
        f"with other jobs (1-minute load {load[0]} at the start, {load_average()[0]} at the end); "
        f"code {git_state()}; {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    args.out.write_text("\n".join([*head, *crepe_lines, "", *cost_lines, ""]))
    args.out.with_suffix(".json").write_text(json.dumps({"crepe_tiny": crepe, "cost": cost}, indent=1))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
