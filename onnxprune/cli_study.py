"""The `onnxprune sensitivity` and `onnxprune sweep` commands (parsers and handlers; `cli.main`
dispatches here).

    onnxprune sensitivity in.onnx [--calib DATA] [--ratios 0.25,0.5,0.75] [--out-dir DIR]
    onnxprune sweep in.onnx --ratios 0.1:0.6:0.1 [--spec JSON ...] [--workers N] [--ray auto|local|ADDRESS]

Each writes a table (printed, and as Markdown), a JSON report and a PNG plot into `--out-dir`,
named after the input (`resnet50_sensitivity.json`, `resnet50_sweep.png`, ...).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from onnxprune.cli import _Parser, parse_input_shapes
from onnxprune.errors import EXIT_OK, UsageError
from onnxprune.executors import Executor, InProcess, LocalProcesses, RayExecutor
from onnxprune.group_sensitivity import DEFAULT_RATIOS, sensitivity
from onnxprune.importance import default_importances
from onnxprune.plots import plot_pareto, plot_sensitivity, pyplot
from onnxprune.sweep import markdown_table, parse_ratios, ratio_specs, sweep
from onnxprune.targets import DEFAULT_ROUND_TO


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="model (.onnx)")
    p.add_argument(
        "--calib", metavar="DATA", help="calibration samples (.npz file or folder); default random"
    )
    p.add_argument("--calib-samples", type=int, metavar="N", help="use at most N calibration samples")
    p.add_argument("--criterion", choices=default_importances().names(), default=None)
    p.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, metavar="N")
    p.add_argument("--exclude", metavar="REGEX", help="node names whose channels stay")
    p.add_argument("--out-dir", default=".", metavar="DIR", help="where the table, JSON and plot go (.)")
    p.add_argument("--no-plot", action="store_true", help="no PNG (no matplotlib needed)")
    p.add_argument(
        "--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="dynamic dims"
    )
    p.add_argument("--debug", action="store_true")


def sensitivity_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="onnxprune sensitivity",
        description="Prune each group alone at several ratios: fidelity, MACs and latency of each.",
    )
    _common(p)
    default = ",".join(f"{r:g}" for r in DEFAULT_RATIOS)
    p.add_argument("--ratios", default=default, help=f"ratios, R1,R2 or START:STOP:STEP ({default})")
    p.add_argument("--latency-runs", type=int, default=10, metavar="N", help="timed runs per point (0: none)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (2)")
    return p


def sweep_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="onnxprune sweep",
        description="One trial (prune, validate, bench, fidelity) per setting; a table and a Pareto plot.",
    )
    _common(p)
    p.add_argument("--ratios", help="one trial per ratio: R1,R2 or START:STOP:STEP (0.1:0.6:0.1)")
    p.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="JSON",
        help='one trial with these prune() keywords, e.g. \'{"ratio": 0.3, "round_to": 1}\' (repeatable)',
    )
    p.add_argument("--compensate", choices=("none", "bias", "lsq"), default=None)
    p.add_argument("--workers", type=int, default=1, help="local worker processes (1)")
    p.add_argument(
        "--ray", metavar="auto|local|ADDRESS", help="run trials on Ray (pip install 'onnxprune[ray]')"
    )
    p.add_argument("--bench-runs", type=int, default=10, metavar="N", help="timed runs per trial (0: none)")
    p.add_argument("--no-validate", action="store_true", help="skip checker/ONNX Runtime/parity checks")
    return p


def run(command: str, argv: Sequence[str], console: Console) -> int:
    """`onnxprune sensitivity ...` or `onnxprune sweep ...`: the exit code."""
    if command == "sensitivity":
        return _sensitivity(sensitivity_parser().parse_args(argv), console)
    return _sweep(sweep_parser().parse_args(argv), console)


def _sensitivity(args: argparse.Namespace, console: Console) -> int:
    out = _out_dir(args)
    with console.status("sensitivity: pruning each group alone") as status:
        report = sensitivity(
            args.input,
            ratios=parse_ratios(args.ratios),
            calibration=args.calib,
            calibration_samples=args.calib_samples,
            criterion=args.criterion,
            round_to=args.round_to,
            exclude=args.exclude,
            latency_runs=args.latency_runs,
            threads=args.threads,
            input_shapes=parse_input_shapes(args.input_shape),
            progress=lambda done, total: status.update(f"sensitivity: {done}/{total} points"),
        )
    stem = out / f"{Path(args.input).stem}_sensitivity"
    rows = report.table()
    _print_table(console, f"sensitivity of {report.source} (worst first)", rows)
    written = [_write_json(stem, report.to_json()), _write_markdown(stem, rows)]
    if not args.no_plot:
        written.append(plot_sensitivity(report, stem.with_suffix(".png")))
    console.print(
        f"{len(report.curves)} groups x {len(report.ratios)} ratios in {report.seconds:.1f} s, fidelity on "
        f"{report.fidelity_source}; worst: "
        + "; ".join(f"group {c.group} ({c.name})" for c in report.worst(3))
    )
    console.print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _sweep(args: argparse.Namespace, console: Console) -> int:
    out = _out_dir(args)
    common: dict[str, Any] = {} if args.round_to == DEFAULT_ROUND_TO else {"round_to": args.round_to}
    for key in ("criterion", "exclude", "compensate"):
        if getattr(args, key) is not None:
            common[key] = getattr(args, key)
    specs = ratio_specs(parse_ratios(args.ratios), **common) if args.ratios else []
    specs += [{**common, **_spec(text)} for text in args.spec]
    if not specs:
        raise UsageError("onnxprune sweep: give --ratios and/or --spec JSON")
    executor = _executor(args)
    with console.status(f"sweep: {len(specs)} trials on {executor.describe()}"):
        report = sweep(
            args.input,
            specs,
            executor=executor,
            calibration=args.calib,
            calibration_samples=args.calib_samples,
            validate=not args.no_validate,
            bench_runs=args.bench_runs,
            input_shapes=parse_input_shapes(args.input_shape),
        )
    stem = out / f"{Path(args.input).stem}_sweep"
    rows = report.table()
    _print_table(console, f"sweep of {report.source} on {report.executor}", rows)
    written = [_write_json(stem, report.to_json()), _write_markdown(stem, rows)]
    if not args.no_plot:
        written.append(plot_pareto(report, stem.with_suffix(".png")))
    failed = sum(1 for row in report.rows if not row.ok)
    console.print(f"{len(report.rows)} trials, {failed} failed, {report.seconds:.1f} s")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--spec {text!r} is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise UsageError(f"--spec {text!r}: expected a JSON object of prune() keywords")
    return spec


def _executor(args: argparse.Namespace) -> Executor:
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.ray:
        return RayExecutor(address=args.ray, workers=args.workers)
    return InProcess() if args.workers == 1 else LocalProcesses(args.workers)


def _out_dir(args: argparse.Namespace) -> Path:
    """The output folder, checked before any work (and matplotlib, unless --no-plot)."""
    if not args.no_plot:
        pyplot()
    out = Path(args.out_dir)
    if not out.is_dir():
        raise UsageError(f"--out-dir {out} is not a directory")
    if not Path(args.input).is_file():
        raise UsageError(f"{args.input}: no such model file")
    return out


def _print_table(console: Console, title: str, rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)


def _write_json(stem: Path, data: dict[str, Any]) -> Path:
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return path


def _write_markdown(stem: Path, rows: list[list[str]]) -> Path:
    path = stem.with_suffix(".md")
    path.write_text(markdown_table(rows) + "\n", encoding="utf-8")
    return path
