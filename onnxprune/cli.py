"""The `onnxprune` command line.

    onnxprune in.onnx out.onnx --ratio 0.4 [--plan PLAN.json] [--report REPORT.json]
    onnxprune analyze in.onnx
    onnxprune validate orig.onnx pruned.onnx --plan PLAN.json

Exit codes: 0 success, 1 a validation check failed, 2 usage error, 3 model error.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from onnxprune.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, OnnxPruneError, UsageError
from onnxprune.selection import DEFAULT_ROUND_TO

SUBCOMMANDS = ("prune", "analyze", "validate")


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
    p.add_argument("--criterion", choices=["l1", "l2"], default="l1", help="weight magnitude criterion")
    p.add_argument(
        "--round-to",
        type=int,
        default=DEFAULT_ROUND_TO,
        metavar="N",
        help=f"kept channel counts are multiples of N (default {DEFAULT_ROUND_TO}: fast on CPUs; 1: off)",
    )
    p.add_argument("--exclude", metavar="REGEX", help="node names whose channels stay")
    p.add_argument("--plan", metavar="PLAN.json", help="write the plan here")
    p.add_argument("--apply-plan", metavar="PLAN.json", help="replay this plan instead of selecting")
    p.add_argument("--report", metavar="REPORT.json", help="write the report here")
    p.add_argument("--validate", action="store_true", help="check the result (checker, ONNX Runtime, parity)")
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


def _prune(args: argparse.Namespace, console: Console) -> int:
    from onnxprune.pipeline import prune
    from onnxprune.plan import Plan

    if args.apply_plan is None and args.ratio is None and args.head_ratio is None and args.ffn_ratio is None:
        raise UsageError(
            "onnxprune: give --ratio R (or --head-ratio / --ffn-ratio, or --apply-plan PLAN.json)"
        )
    plan = Plan.load(args.apply_plan) if args.apply_plan else None
    result = prune(
        args.input,
        ratio=args.ratio,
        head_ratio=args.head_ratio,
        ffn_ratio=args.ffn_ratio,
        criterion=args.criterion,
        round_to=args.round_to,
        exclude=args.exclude,
        plan=plan,
    )
    ok = True
    validation = None
    if args.validate:
        from onnxprune.validate import validate

        validation = validate(
            args.input, result.model, result.plan, input_shapes=parse_input_shapes(args.input_shape)
        )
        ok = bool(validation)
    if ok:
        path = result.save(args.output, force=args.force)
    if args.plan:
        result.plan.save(args.plan)
    if args.report:
        data = result.report.to_json()
        if validation is not None:
            data["validation"] = validation.to_json()
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
    _print_summary(console, result.report)
    if validation is not None:
        console.print(str(validation))
    if not ok:
        console.print("[bold red]validation failed: nothing written[/]", markup=True)
        return EXIT_CHECK_FAILED
    console.print(f"wrote {path}")
    return EXIT_OK


def _print_summary(console: Console, report) -> None:
    table = Table(title=f"onnxprune: {report.source}", show_header=True)
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("params", f"{report.params_before:,}", f"{report.params_after:,}")
    if report.macs_before is not None and report.macs_after is not None:
        table.add_row("MACs", f"{report.macs_before:,}", f"{report.macs_after:,}")
    console.print(table)
    if report.prunable_macs_fraction is not None:
        console.print(f"{report.prunable_macs_fraction:.0%} of the MACs are in layers with prunable channels")
    console.print(
        f"groups: {report.groups_found} found, {report.groups_pruned} pruned, "
        f"{report.groups_pinned} pinned; {report.tensors_sliced} tensors sliced, "
        f"{report.rewrites} nodes rewritten"
    )


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
    )
    console.print(str(report))
    return EXIT_OK if report else EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
