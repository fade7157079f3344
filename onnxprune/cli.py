"""The `onnxprune` command line.

    onnxprune in.onnx out.onnx --ratio 0.4 [--plan PLAN.json] [--report REPORT.json]
    onnxprune analyze in.onnx
    onnxprune validate orig.onnx pruned.onnx --plan PLAN.json
    onnxprune bench a.onnx [b.onnx] [--runs N] [--threads N] [--batch N]
    onnxprune sensitivity in.onnx [--calib DATA] [--ratios 0.25,0.5,0.75]   (onnxprune/cli_study.py)
    onnxprune sweep in.onnx --ratios 0.1:0.6:0.1 [--workers N] [--ray auto|local|ADDRESS]

Exit codes: 0 success, 1 a validation check failed, 2 usage error, 3 model error, 4 internal
error (a bug in onnxprune).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from onnxprune.cli_options import add_budget_options, add_depth_options, add_sparsity_options
from onnxprune.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, OnnxPruneError, UsageError
from onnxprune.importance import default_importances
from onnxprune.targets import DEFAULT_ROUND_TO

SUBCOMMANDS = ("prune", "analyze", "validate", "bench", "sensitivity", "sweep")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so every error path is ours."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _prune_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxprune", description="Remove whole channels from an ONNX model.")
    p.add_argument("input", help="model to prune (.onnx)")
    p.add_argument("output", help="where to write the pruned model")
    p.add_argument(
        "--ratio", type=float, help="fraction of channels removed from every prunable group, in [0, 1)"
    )
    p.add_argument("--head-ratio", type=float, help="fraction of attention heads removed (default: --ratio)")
    p.add_argument(
        "--ffn-ratio", type=float, help="fraction of other channels (FFN, filters) removed (default: --ratio)"
    )
    add_budget_options(p)
    importances = default_importances()
    p.add_argument(
        "--criterion",
        choices=importances.names(),
        default=None,
        help="unit importance: "
        + "; ".join(f"{c.name}: {c.summary}" for c in importances)
        + " (default: activation with --calib, l1 without)",
    )
    p.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration samples: an .npz file or a folder of .npz/.npy files (keys: graph input "
        "names, first axis: samples)",
    )
    p.add_argument("--calib-samples", type=int, metavar="N", help="use at most N calibration samples")
    p.add_argument(
        "--eval-data",
        metavar="DATA",
        help="held-out samples to report fidelity on (default: a share of --calib, see --holdout)",
    )
    p.add_argument(
        "--compensate",
        choices=("none", "bias", "lsq"),
        default=None,
        help="refit kept weights after slicing: bias (removed channels' means into the biases; from "
        "BatchNorm without data), lsq (least squares on both models' activations, needs --calib), "
        "none (default: lsq with --calib, none without)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        metavar="F",
        help="without --eval-data, this share of the --calib feeds is held out for fidelity (0.2)",
    )
    p.add_argument(
        "--round-to",
        type=int,
        default=DEFAULT_ROUND_TO,
        metavar="N",
        help=f"kept channel counts are multiples of N (default {DEFAULT_ROUND_TO}: fast on CPUs; 1: off)",
    )
    add_depth_options(p)
    p.add_argument(
        "--exclude",
        metavar="REGEX",
        help="node names whose channels stay (and, with --sparsity/--nm, whose weights stay dense; "
        "default there: the first and last layers)",
    )
    add_sparsity_options(p)
    p.add_argument("--plan", metavar="PLAN.json", help="write the plan here")
    p.add_argument("--apply-plan", metavar="PLAN.json", help="replay this plan instead of selecting")
    p.add_argument("--report", metavar="REPORT.json", help="write the report here")
    p.add_argument(
        "--validate", action="store_true", help="check the result (checker, ONNX Runtime, parity) and time it"
    )
    p.add_argument("--bench-runs", type=int, default=20, metavar="N", help="timed runs for --validate (20)")
    _add_input_shape(p)
    p.add_argument("--force", action="store_true", help="allow the output to overwrite the input")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _analyze_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxprune analyze", description="Show coupling groups and barriers.")
    p.add_argument("input")
    p.add_argument("--exclude", metavar="REGEX")
    p.add_argument("--json", metavar="OUT.json", help="also write the analysis as JSON")
    p.add_argument("--debug", action="store_true")
    return p


def _validate_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxprune validate", description="Check a pruned model against its original.")
    p.add_argument("original")
    p.add_argument("pruned")
    p.add_argument("--plan", required=True, metavar="PLAN.json")
    p.add_argument("--tolerance", type=float, default=1e-4, help="relative error allowed (default 1e-4)")
    p.add_argument(
        "--structural",
        metavar="SLICED.onnx",
        help="the model as sliced, before a pass changed values (plan `updates`): parity is checked on it",
    )
    p.add_argument(
        "--data",
        metavar="DATA",
        help="samples (.npz file, or a folder of .npz/.npy) to report the pruned model's fidelity on",
    )
    _add_input_shape(p)
    p.add_argument("--debug", action="store_true")
    return p


def _add_input_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME:1x3x224x224",
        help="shape used for a graph input with dynamic dims (repeatable)",
    )


def parse_input_shapes(specs: list[str]) -> dict[str, list[int]] | None:
    """`["x:1x3x224x224"]` -> `{"x": [1, 3, 224, 224]}`; UsageError on a malformed spec."""
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            values = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            values = []
        if not sep or not name or not values or any(v < 1 for v in values):
            raise UsageError(f"--input-shape {spec!r}: expected NAME:DIMxDIMx... with positive sizes")
        shapes[name] = values
    return shapes or None


def _bench_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="onnxprune bench",
        description="ONNX Runtime CPU latency of one model, or of two interleaved (A B A B ...).",
    )
    p.add_argument("model_a")
    p.add_argument("model_b", nargs="?")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    _add_input_shape(p)
    p.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")
    p.add_argument("--debug", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    width = None if sys.stdout.isatty() else 140  # pipes and CI logs: wide enough for the tables
    console = Console(stderr=False, highlight=False, markup=False, width=width)
    errors = Console(stderr=True, highlight=False, markup=False)
    debug = "--debug" in args
    try:
        if args and args[0] in SUBCOMMANDS:
            command, rest = args[0], args[1:]
        else:
            command, rest = "prune", args
        if command == "analyze":
            return _analyze(_analyze_parser().parse_args(rest), console)
        if command == "validate":
            return _validate(_validate_parser().parse_args(rest), console)
        if command == "bench":
            return _bench(_bench_parser().parse_args(rest), console)
        if command in ("sensitivity", "sweep"):
            from onnxprune import cli_study

            return cli_study.run(command, rest, console)
        return _prune(_prune_parser().parse_args(rest), console)
    except OnnxPruneError as exc:
        if debug:
            traceback.print_exc()
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line unless --debug, and a distinct exit code
        if debug:
            traceback.print_exc()
        errors.print(
            f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')} "
            "(rerun with --debug for the traceback)",
            markup=True,
            soft_wrap=True,
        )
        return EXIT_INTERNAL


def _check_prune_args(args: argparse.Namespace) -> None:
    """UsageError when the command line asks for nothing to remove, or data options without data."""
    budgets = (args.target_macs, args.target_params, args.target_speedup)
    ratios = (args.ratio, args.head_ratio, args.ffn_ratio)
    depth = (args.drop_blocks, args.depth_ratio)
    if args.apply_plan is None and all(
        v is None for v in (*ratios, *budgets, *depth, args.sparsity, args.nm)
    ):
        raise UsageError(
            "onnxprune: give --ratio R (or --head-ratio / --ffn-ratio, --target-macs F, --target-params F, "
            "--target-speedup X, --drop-blocks N, --sparsity S, --nm N:M, or --apply-plan PLAN.json)"
        )
    if args.calib is None and (args.eval_data or args.calib_samples is not None):
        raise UsageError("onnxprune: --eval-data and --calib-samples need --calib DATA")


def _prune(args: argparse.Namespace, console: Console) -> int:
    from onnxprune.pipeline import prune
    from onnxprune.plan import Plan

    _check_prune_args(args)
    plan = Plan.load(args.apply_plan) if args.apply_plan else None
    shapes = parse_input_shapes(args.input_shape)
    with _progress(console, "pruning", "calibration samples" if args.calib else None) as tick:
        result = prune(
            args.input,
            ratio=args.ratio,
            head_ratio=args.head_ratio,
            ffn_ratio=args.ffn_ratio,
            criterion=args.criterion,
            round_to=args.round_to,
            exclude=args.exclude,
            plan=plan,
            calibration=args.calib,
            calibration_samples=args.calib_samples,
            eval_data=args.eval_data,
            holdout=args.holdout,
            compensate=args.compensate,
            progress=tick,
            drop_blocks=args.drop_blocks,
            depth_ratio=args.depth_ratio,
            depth_criterion=args.depth_criterion,
            target_macs=args.target_macs,
            target_params=args.target_params,
            target_speedup=args.target_speedup,
            allocation=args.allocate,
            max_group_ratio=args.max_group_ratio,
            input_shapes=shapes,
            batch=args.batch,
            threads=args.threads,
            sparsity=args.sparsity,
            sparsity_scope=args.sparsity_scope,
            nm=args.nm,
            sparse_format=args.sparse_format,
        )
    ok = True
    validation = bench = None
    if args.validate:
        from onnxprune.bench import benchmark
        from onnxprune.validate import validate

        with console.status("validating: checker, ONNX Runtime, mask-equivalence parity"):
            validation = validate(
                args.input, result.model, result.plan, input_shapes=shapes, structural=result.structural
            )
        ok = bool(validation)
        if ok:
            with console.status("timing original and pruned, interleaved"):
                bench = benchmark(args.input, result.model, runs=args.bench_runs, input_shapes=shapes)
    if ok:
        path = result.save(args.output, force=args.force)
    if args.plan:
        result.plan.save(args.plan)
    if args.report:
        data = result.report.to_json()
        if validation is not None:
            data["validation"] = validation.to_json()
        if bench is not None:
            data["benchmark"] = bench.to_json()
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
    _print_summary(console, result.report, bench, path if ok else None)
    if validation is not None:
        console.print(str(validation))
    if bench is not None:
        console.print(_session_line(bench))
    if not ok:
        console.print("[bold red]validation failed: nothing written[/]", markup=True)
        return EXIT_CHECK_FAILED
    console.print(f"wrote {path}")
    return EXIT_OK


@contextlib.contextmanager
def _progress(console: Console, what: str, counted: str | None) -> Iterator[Callable[[int], None] | None]:
    """A spinner for `what`; with `counted`, a running count of those (a progress bar without a
    known total: data folders and iterables do not say how many samples they hold)."""
    if counted is None:
        with console.status(what):
            yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} " + counted),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda samples: bar.advance(task, samples)


def _print_summary(console: Console, report, bench=None, path=None) -> None:
    table = Table(title=f"onnxprune: {report.source}", show_header=True)
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("ratio", justify="right")

    def row(name: str, before, after, fmt=lambda v: f"{v:,}") -> None:
        if before is None or after is None:
            return
        table.add_row(name, fmt(before), fmt(after), f"{after / before:.2f}" if before else "")

    row("params", report.params_before, report.params_after)
    row("MACs", report.macs_before, report.macs_after)
    if bench is not None:
        row("file size (bytes)", bench.size_bytes[0], bench.size_bytes[1])
        row(
            "latency median (ms)",
            bench.latency[0].median_ms,
            bench.latency[1].median_ms,
            lambda v: f"{v:.3f}",
        )
    console.print(table)
    if bench is not None and bench.speedup is not None:
        ideal = f"{bench.ideal_speedup:.2f}x" if bench.ideal_speedup else "unknown"
        realised = f"{bench.realised_fraction:.2f}" if bench.realised_fraction is not None else "unknown"
        roofline = f"{bench.roofline_speedup:.2f}x" if bench.roofline_speedup else "unknown"
        console.print(
            f"speedup {bench.speedup:.2f}x, ideal (MACs) {ideal}, realised fraction {realised}; "
            f"roofline (MACs and bytes moved) {roofline}"
        )
    if report.prunable_macs_fraction is not None:
        console.print(f"{report.prunable_macs_fraction:.0%} of the MACs are in layers with prunable channels")
    console.print(
        f"groups: {report.groups_found} found, {report.groups_pruned} pruned, "
        f"{report.groups_pinned} pinned; {report.tensors_sliced} tensors sliced, "
        f"{report.rewrites} nodes rewritten"
    )
    if report.depth is not None:
        for line in report.depth["dropped"]:
            console.print(f"dropped residual branch {line}")
    if report.calibration is not None:
        c = report.calibration
        console.print(
            f"calibration: {c['samples']:,} samples in {c['feeds']} feeds of {c['source']}, "
            f"{c['tensors']} activations measured, {c['seconds']:.1f} s; criterion {report.criterion}"
        )
    if report.compensation is not None:
        c = report.compensation
        console.print(
            f"compensation {c['method']}: {c['applied']} of {c['consumers']} consumers refitted, "
            f"{c['tensors_updated']} tensors updated, {c['seconds']:.1f} s"
        )
    if report.sparsity is not None:
        from onnxprune.sparsity.run import summary_lines

        for line in summary_lines(report.sparsity):
            console.print(line)
    if report.budget is not None:
        _print_budget(console, report.budget)
    for note in report.notes:
        console.print(f"note: {note}")
    if report.structural_fidelity is not None:
        before = "compensation" if report.compensation else "sparsity"
        _print_fidelity(console, report.structural_fidelity, f"structural prune, before {before}")
    if report.fidelity is not None:
        _print_fidelity(console, report.fidelity, "output model" if report.compensation else "")


def _print_budget(console: Console, budget: dict) -> None:
    """Asked against achieved, and why not when the budget was missed."""
    metric = budget["metric"]
    if "asked_speedup" in budget:
        line = (
            f"budget: speedup {budget['asked_speedup']:.2f}x asked, "
            f"{budget['measured_speedup']:.2f}x measured ({len(budget['attempts'])} attempt(s), "
            f"{budget['allocation']} allocation)"
        )
    else:
        achieved = budget.get("achieved", budget["predicted"])
        line = (
            f"budget: {metric} x{budget['asked']:.3f} asked, x{achieved:.3f} achieved "
            f"({budget['allocation']} allocation; lowest reachable x{budget['reachable']:.3f})"
        )
    console.print(line)
    for remark in budget.get("remarks", []):
        console.print(f"note: {remark}")
    if budget.get("note"):
        console.print(f"[yellow]budget missed: {budget['note']}[/]", markup=True)


def _print_fidelity(console: Console, fidelity: dict, what: str = "") -> None:
    """One line per output: how close the pruned model stays to the input on held-out samples."""
    where = f"{fidelity['source']} ({fidelity['feeds']} feeds, not calibrated on)"
    console.print(f"fidelity to the input{f' ({what})' if what else ''} on {where}:")
    if fidelity.get("error"):
        console.print(f"  error: {fidelity['error']}")
    for out in fidelity["outputs"]:
        if out.get("cosine") is None:
            console.print(f"  {out['name']}: {out.get('detail') or 'no figures'}")
            continue
        agreement = out.get("argmax_agreement")
        argmax = f", argmax agreement {agreement:.3f}" if agreement is not None else ""
        console.print(
            f"  {out['name']}: cosine {out['cosine']:.4f}, relative error {out['rel_err']:.3g}{argmax}"
        )


def _session_line(bench) -> str:
    s = bench.session
    return (
        f"timing: onnxruntime {s.onnxruntime_version} {s.provider}, {s.intra_op_threads} intra-op threads, "
        f"{s.graph_optimization_level}, batch {bench.batch}, {bench.runs} runs after {bench.warmup} warm-up, "
        "interleaved"
    )


def _bench(args: argparse.Namespace, console: Console) -> int:
    from onnxprune.bench import benchmark

    with console.status("timing" + (" (interleaved)" if args.model_b else "")):
        report = benchmark(
            args.model_a,
            args.model_b,
            runs=args.runs,
            warmup=args.warmup,
            threads=args.threads,
            batch=args.batch,
            input_shapes=parse_input_shapes(args.input_shape),
        )
    console.print(str(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=1)
    return EXIT_OK


def _analyze(args: argparse.Namespace, console: Console) -> int:
    from onnxprune.pipeline import analyze

    analysis = analyze(args.input, exclude=args.exclude)
    table = Table(title=f"coupling groups of {args.input}")
    for col in ("id", "units", "kind", "prunable", "weight members", "pinned by"):
        table.add_column(col)
    for g in analysis.groups:
        pinned = "" if g.prunable else str(g.barriers[0]) if g.barriers else "?"
        table.add_row(str(g.id), str(g.size), g.kind, "yes" if g.prunable else "no", g.describe(), pinned)
    console.print(table)
    console.print(f"{len(analysis.prunable_groups)} prunable, {len(analysis.pinned_groups)} pinned groups")
    if analysis.barriers:
        console.print("barriers:")
        for b in analysis.barriers:
            console.print(f"  {b}")
    if args.json:
        data = {
            "groups": [
                {
                    "id": g.id,
                    "size": g.size,
                    "kind": g.kind,
                    "prunable": g.prunable,
                    "members": [m.key for m in g.weight_members],
                    "barriers": [str(b) for b in g.barriers],
                }
                for g in analysis.groups
            ],
            "barriers": [str(b) for b in analysis.barriers],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
    return EXIT_OK


def _validate(args: argparse.Namespace, console: Console) -> int:
    from onnxprune.plan import Plan
    from onnxprune.validate import validate

    report = validate(
        args.original,
        args.pruned,
        Plan.load(args.plan),
        tolerance=args.tolerance,
        input_shapes=parse_input_shapes(args.input_shape),
        structural=args.structural,
        data=args.data,
    )
    console.print(str(report))
    return EXIT_OK if report else EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
