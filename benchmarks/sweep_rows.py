"""What the architecture sweeps (timm_sweep.py, hf_sweep.py) record per export, and their table.

A row is {"model", "exporter"} plus either "error" (the export or onnxprune raised) or the outcome
of `onnxprune.prune` at the sweep's ratio with default options and `onnxprune.validate`: valid,
groups [found, pruned, pinned], MACs [before, after], share of MACs in prunable layers.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import onnxprune


def prune_row(row: dict, path: Path, ratio: float, input_shapes: dict[str, list[int]] | None = None) -> dict:
    """`row` completed with the outcome of pruning and validating the export at `path`."""
    try:
        started = time.perf_counter()
        result = onnxprune.prune(str(path), ratio=ratio)
        row["prune_s"] = time.perf_counter() - started
        check = onnxprune.validate(str(path), result.model, result.plan, input_shapes=input_shapes)
        report = result.report
        row.update(
            valid=bool(check),
            groups=[report.groups_found, report.groups_pruned, report.groups_pinned],
            macs=[report.macs_before, report.macs_after],
            prunable_macs=report.prunable_macs_fraction,
            barriers=report.barriers[:3],
        )
        if not check:
            row["report"] = str(check)
    except Exception:
        row["error"] = "onnxprune: " + traceback.format_exc().strip().splitlines()[-1][:200]
    return row


def table(rows: list[dict]) -> list[str]:
    """The markdown table of the rows, one line per export."""
    lines = [
        "| model | exporter | groups found / pruned / pinned | MACs ratio | prunable MACs | valid |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['exporter']} | {r['error']} | | | |")
            continue
        before, after = r["macs"]
        ratio = f"{before / after:.2f}×" if before and after else "n/a"
        share = f"{r['prunable_macs']:.2f}" if r["prunable_macs"] is not None else "n/a"
        found, pruned, pinned = r["groups"]
        lines.append(
            f"| {r['model']} | {r['exporter']} | {found} / {pruned} / {pinned} | {ratio} | {share} | "
            f"{'ok' if r['valid'] else '**FAILED**'} |"
        )
    return lines
