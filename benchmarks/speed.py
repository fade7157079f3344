"""Speed study: what pruning buys in ONNX Runtime, per model, ratio and --round-to.

For every model and every (ratio, round_to) it prunes with ``onnxprune.prune`` (default options
otherwise), validates the result (``onnxprune.validate``: checker, runtime, slices, parity), and
measures with ``onnxprune.bench.benchmark`` the latency of the original and the pruned model,
interleaved on the same inputs, at each batch size: speedup (median latency ratio), ideal speedup
(MAC ratio) and realised fraction (speedup / ideal). It also times the tool itself, load ->
prune -> save, against a plain ``onnx.load`` + ``onnx.save`` of the same file.

The models come from benchmarks/export_torchvision.py (a cache folder outside the repository):

    /tmp/venv-tv/bin/python benchmarks/export_torchvision.py --out /tmp/onnxprune-bench
    /tmp/venv-tv/bin/python benchmarks/speed.py --models-dir /tmp/onnxprune-bench

It prints a markdown table and writes benchmarks/results.md (table, machine, command) and
benchmarks/results.json (every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from machine import cpu_flags, cpu_model, git_state, load_average

import onnxprune
from onnxprune.bench import benchmark

HERE = Path(__file__).resolve().parent
MODELS = ("resnet50", "mobilenet_v2", "densenet121")
RATIOS = (0.2, 0.4, 0.6)
ROUND_TO = (1, 8, 16)
BATCHES = (1, 8)


def machine() -> dict[str, Any]:
    """CPU model, cores, load and library versions, as recorded next to the results."""
    flags = cpu_flags()
    simd = [f for f in ("avx512f", "avx512_vnni", "avx2", "fma", "avx") if f in flags]
    return {
        "cpu": cpu_model(),
        "simd": simd[:2],
        "logical_cpus": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "onnxprune": onnxprune.__version__,
        "onnxprune_git": git_state(),
    }


def seconds(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall time and CPU time of this process (s) of one call of `fn`, and its result."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def study_one(
    name: str, path: Path, ratio: float, round_to: int, args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    pruned_path = scratch / f"{name}_r{ratio}_q{round_to}.onnx"
    row: dict[str, Any] = {"model": name, "ratio": ratio, "round_to": round_to}

    def prune_and_save() -> onnxprune.PruneResult:
        result = onnxprune.prune(str(path), ratio=ratio, round_to=round_to)
        result.save(pruned_path, force=True)
        return result

    def load_and_save() -> None:
        onnx.save(onnx.load(str(path)), str(scratch / "plain.onnx"))

    # the tool and the plain load+save alternate, so that load from elsewhere on the machine
    # weighs on both alike
    prune_times, load_save_times, prune_cpu, load_save_cpu = [], [], [], []
    try:
        for _ in range(args.prune_repeats):
            elapsed, cpu, result = seconds(prune_and_save)
            prune_times.append(elapsed)
            prune_cpu.append(cpu)
            elapsed, cpu, _ = seconds(load_and_save)
            load_save_times.append(elapsed)
            load_save_cpu.append(cpu)
    except Exception:
        row["error"] = traceback.format_exc()
        return row
    row.update(
        prune_s=statistics.median(prune_times),
        load_save_s=statistics.median(load_save_times),
        prune_times_s=prune_times,
        load_save_times_s=load_save_times,
        prune_cpu_s=statistics.median(prune_cpu),
        load_save_cpu_s=statistics.median(load_save_cpu),
        prune_cpu_times_s=prune_cpu,
        load_save_cpu_times_s=load_save_cpu,
    )
    report = result.report
    row.update(
        params_before=report.params_before,
        params_after=report.params_after,
        macs_before=report.macs_before,
        macs_after=report.macs_after,
        groups_pruned=report.groups_pruned,
        groups_prunable=report.groups_prunable,
    )
    try:
        check = onnxprune.validate(str(path), result.model, result.plan)
        row["validate"] = bool(check)
        if not check:
            row["validate_report"] = str(check)
    except Exception:
        row["validate"] = False
        row["validate_report"] = traceback.format_exc()
    row["bench"] = {str(batch): [] for batch in args.batches}
    if args.no_latency:
        pruned_path.unlink(missing_ok=True)
        return row
    row["load_average_before"] = round(os.getloadavg()[0], 2)
    # repeats alternate between batch sizes so that they are spread over time: a burst of load
    # from elsewhere on the machine then spoils one repeat, not all of them
    for _ in range(args.repeats):
        for batch in args.batches:
            bench = benchmark(
                str(path),
                str(pruned_path),
                runs=args.runs,
                warmup=args.warmup,
                threads=args.threads,
                batch=batch,
            )
            row["bench"][str(batch)].append(bench.to_json())
    row["summary"] = {batch: summarise(reports) for batch, reports in row["bench"].items()}
    row["load_average_after"] = round(os.getloadavg()[0], 2)
    pruned_path.unlink(missing_ok=True)
    return row


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repeats of each figure, and the range of the realised fraction."""

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    realised = [r["realised_fraction"] for r in reports]
    known = [v for v in realised if v is not None]
    return {
        "original_ms": median([r["latency"][0]["median_ms"] for r in reports]),
        "pruned_ms": median([r["latency"][1]["median_ms"] for r in reports]),
        "speedup": median([r["speedup"] for r in reports]),
        "ideal_speedup": median([r["ideal_speedup"] for r in reports]),
        "realised_fraction": median(realised),
        "realised_min": min(known) if known else None,
        "realised_max": max(known) if known else None,
        "repeats": len(reports),
    }


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], batches: list[int]) -> str:
    head = ["model", "ratio", "round_to", "params M", "GMACs (b1)"]
    for b in batches:
        head += [f"b{b} ms orig → pruned", f"b{b} speedup", f"b{b} ideal", f"b{b} realised"]
    head += ["prune+save s", "load+save s", "× load+save", "× in CPU time", "validate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        if "error" in row:
            cells = [row["model"], f"{row['ratio']}", f"{row['round_to']}", "error: see results.json"]
            cells += [""] * (len(head) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [
            row["model"],
            f"{row['ratio']}",
            f"{row['round_to']}",
            f"{row['params_before'] / 1e6:.2f} → {row['params_after'] / 1e6:.2f}",
            f"{row['macs_before'] / 1e9:.3f} → {row['macs_after'] / 1e9:.3f}"
            if row["macs_before"] and row["macs_after"]
            else "n/a",
        ]
        for b in batches:
            if "summary" not in row:
                cells += ["-"] * 4
                continue
            summary = row["summary"][str(b)]
            spread = ""
            if summary["repeats"] > 1 and summary["realised_min"] is not None:
                spread = f" ({summary['realised_min']:.2f}–{summary['realised_max']:.2f})"
            cells += [
                f"{summary['original_ms']:.1f} → {summary['pruned_ms']:.1f}",
                fmt(summary["speedup"], ".2f"),
                fmt(summary["ideal_speedup"], ".2f"),
                fmt(summary["realised_fraction"], ".2f") + spread,
            ]
        cells += [
            f"{row['prune_s']:.2f}",
            f"{row['load_save_s']:.2f}",
            f"{row['prune_s'] / row['load_save_s']:.1f}",
            f"{row['prune_cpu_s'] / row['load_save_cpu_s']:.1f}" if "prune_cpu_s" in row else "n/a",
            "ok" if row["validate"] else "FAILED",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/onnxprune-bench"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    parser.add_argument("--round-to", nargs="+", type=int, default=list(ROUND_TO))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--runs", type=int, default=15, help="timed runs per benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="benchmarks per model, ratio and batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prune-repeats", type=int, default=3, help="median of this many prune+save timings")
    parser.add_argument(
        "--no-latency", action="store_true", help="only prune, validate and time the tool (no ORT latency)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)

    info = machine()
    info["threads"] = args.threads
    started = time.time()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="onnxprune-speed-") as tmp:
        scratch = Path(tmp)
        for name in args.models:
            path = args.models_dir / f"{name}.onnx"
            if not path.is_file():
                raise SystemExit(
                    f"{path}: missing; run benchmarks/export_torchvision.py --out {args.models_dir}"
                )
            for ratio in args.ratios:
                for round_to in args.round_to:
                    row = study_one(name, path, ratio, round_to, args, scratch)
                    rows.append(row)
                    print(table([row], args.batches).splitlines()[-1], flush=True)
                    if "error" in row:
                        print(row["error"], file=sys.stderr, flush=True)
    info["load_average_end"] = load_average()
    info["wall_minutes"] = round((time.time() - started) / 60, 1)
    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = table(rows, args.batches)
    print()
    print(text)
    args.json.write_text(
        json.dumps({"machine": info, "command": command.strip(), "rows": rows}, indent=1) + "\n"
    )
    simd = "/".join(info["simd"]) or "no AVX"
    if args.no_latency:
        method = "Latency not measured (--no-latency)."
    else:
        method = (
            f"Each latency cell: {args.repeats} benchmarks of {args.runs} timed runs after {args.warmup} "
            "warm-up, original and pruned interleaved (A B A B ...); the figure is the median over the "
            "benchmarks, the realised fraction's range over them in brackets."
        )
    args.out.write_text(
        "# Speed study results\n\n"
        f"Machine: {info['cpu']} ({simd}), {info['logical_cpus']} logical CPUs, "
        f"Python {info['python']}, ONNX Runtime {info['onnxruntime']} (CPUExecutionProvider, "
        f"ORT_ENABLE_ALL, {args.threads} intra-op threads, 1 inter-op, spinning off), onnx {info['onnx']}, "
        f"onnxprune {info['onnxprune']} (git {info['onnxprune_git']}). "
        f"Load average at start {info['load_average']}, "
        f"at end {info['load_average_end']}; {info['wall_minutes']} min.\n\n"
        f"Command: `{command.strip()}`. {method} prune+save and load+save are medians of "
        f"{args.prune_repeats}, the two alternating.\n\n"
        "Latency is the median in ms; speedup = median original / median pruned; ideal = MACs "
        "original / MACs pruned at that batch; realised = speedup / ideal. `prune+save` is "
        "onnxprune.prune (load, normalize, analyze, select, apply) plus PruneResult.save; "
        "`load+save` is onnx.load + onnx.save of the same file; `× load+save` compares their wall "
        "times, `× in CPU time` the CPU time of this process (user + system) over the same runs, "
        "which time stolen by other jobs on the host does not inflate.\n\n" + text + "\n"
    )
    return 0 if all("error" not in row and row.get("validate") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
