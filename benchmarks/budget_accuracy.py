"""How close `--target-macs` and `--target-params` land on every model in `models/`.

    python benchmarks/budget_accuracy.py [--budget 0.5] [--out benchmarks/budget_accuracy.md]

For every ``.onnx`` file under ``models/`` and both metrics: ``onnxprune.prune(path,
target_<metric>=B)`` with default options (global allocation, cap 0.8, round_to 8; dynamic
non-batch input dims at 128), then the achieved fraction counted on the pruned model (MACs at the
same input shapes, parameters as `count_params`), whether it is within 2 % of B, and the note the
tool gives when it is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import onnx
import onnxruntime as ort
from machine import cpu_model, git_state

import onnxprune
from onnxprune.metrics import count_macs, graph_inputs, tensor_dims

ROOT = Path(__file__).resolve().parent.parent
SEQUENCE = 32  # within the reference transformers' position tables


def input_shapes(path: Path) -> dict[str, list[int]] | None:
    """Dynamic dims other than the batch set to SEQUENCE (None when every input is static)."""
    model = onnx.load(path, load_external_data=False)
    shapes = {}
    for info in graph_inputs(model):
        dims = tensor_dims(info) or []
        if any(d is None for d in dims[1:]):
            shapes[info.name] = [1] + [SEQUENCE if d is None else d for d in dims[1:]]
    return shapes or None


def row(path: Path, metric: str, budget: float) -> str:
    shapes = input_shapes(path)
    start = time.perf_counter()
    try:
        result = onnxprune.prune(str(path), input_shapes=shapes, **{f"target_{metric}": budget})
    except Exception as exc:  # a failure is a row of the table
        return f"| {path.relative_to(ROOT)} | {metric} | error: {type(exc).__name__}: {exc} | | | |"
    seconds = time.perf_counter() - start
    if metric == "macs":
        achieved = count_macs(result.model, shapes) / count_macs(onnx.load(path), shapes)
    else:
        achieved = result.report.params_after / result.report.params_before
    ok = abs(achieved - budget) <= 0.02 * budget
    note = result.report.budget.get("note") or "; ".join(result.report.budget.get("remarks", []))
    return (
        f"| {path.relative_to(ROOT)} | {metric} | {achieved:.4f} | {'yes' if ok else '**no**'} | "
        f"{seconds:.1f} | {note} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "budget_accuracy.md")
    args = parser.parse_args(argv)
    rows = []
    for path in sorted((ROOT / "models").rglob("*.onnx")):
        for metric in ("macs", "params"):
            rows.append(row(path, metric, args.budget))
            print(rows[-1], flush=True)
    missed = sum("**no**" in r or "error" in r for r in rows)
    lines = [
        f"# Budgets on every model in models/: target {args.budget} of MACs and of parameters",
        "",
        f"`python benchmarks/budget_accuracy.py {' '.join(argv or sys.argv[1:])}` on {git_state()}; "
        f"{cpu_model()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}. Default options: global "
        f"allocation, no group losing over 80 %, kept counts multiples of 8 (single units where aligned "
        f"steps cannot land the budget); dynamic non-batch dims at {SEQUENCE}.",
        "",
        f"{len(rows) - missed} of {len(rows)} prunes land within 2 % of the target; the others say why.",
        "",
        "| model | metric | achieved | within 2 % | prune s | the tool's note |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
