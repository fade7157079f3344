"""`--target-speedup 2.0` on full-width exports: measured speedup against the target, and against
uniform pruning and Torch-Pruning at the same MACs, all timed in one window.

    /tmp/venv-tv/bin/pip install torch-pruning==1.6.1
    /tmp/venv-tv/bin/python benchmarks/speedup_target.py --models-dir /tmp/onnxprune-bench

For each model (torchvision ResNet-50 and MobileNetV2 exported by `export_torchvision.py`, full
width, 224x224, batch 1):

1. ``onnxprune.prune(model, target_speedup=2.0)``: latency model, allocation, measure, repeat;
   its own measured speedup and attempts are recorded (`report.budget`);
2. the MACs fraction M that prune kept; at that M: ``prune(target_macs=M, allocation="uniform")``
   and ``allocation="global"``;
3. Torch-Pruning 1.6.1 (uniform L2 magnitude, ``round_to=16``, classifier output kept), its ratio
   bisected until its MACs fraction is within 1 % of M, exported with the dynamo exporter;
4. every pruned model against the original with ``onnxprune.bench.benchmark`` (interleaved,
   2 threads), the variants taking turns, `--repeats` times; the median speedup is reported.

Writes benchmarks/speedup_target.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from export_torchvision import IMAGE, build, export
from speed import machine
from torch import nn

import onnxprune
from onnxprune.bench import benchmark

HERE = Path(__file__).resolve().parent
MODELS = ("resnet50", "mobilenet_v2")


def peer_at_macs(name: str, fraction: float, scratch: Path) -> tuple[Path, float]:
    """Torch-Pruning at the ratio whose MACs fraction is nearest `fraction` (bisection)."""
    example = torch.randn((1, *IMAGE))
    base_macs, _ = tp.utils.count_ops_and_params(build(name), example)
    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        ratio = (lo + hi) / 2
        model = build(name)
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=ratio,
            ignored_layers=classifier,
            round_to=16,
        )
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, example)
        got = macs / base_macs
        if best is None or abs(got - fraction) < abs(best[1] - fraction):
            best = (model.eval(), got, ratio)
        if abs(got - fraction) <= 0.01 * fraction:
            break
        lo, hi = (ratio, hi) if got > fraction else (lo, ratio)
    path = scratch / f"{name}_tp.onnx"
    export(best[0], path)
    return path, best[1]


def onnxprune_variants(original: Path, scratch: Path, speedup: float) -> tuple[dict[str, Path], dict]:
    """The speedup-targeted prune and the uniform / global prunes at its MACs fraction."""
    start = time.perf_counter()
    targeted = onnxprune.prune(str(original), target_speedup=speedup)
    seconds = time.perf_counter() - start
    budget = dict(targeted.report.budget)
    macs = targeted.report.macs_after / targeted.report.macs_before
    out = {"onnxprune --target-speedup": scratch / "target.onnx"}
    targeted.save(out["onnxprune --target-speedup"], force=True)
    for allocation in ("uniform", "global"):
        result = onnxprune.prune(str(original), target_macs=macs, allocation=allocation)
        check = onnxprune.validate(str(original), result.model, result.plan)
        if not check:
            raise SystemExit(f"{original.name}: {allocation} prune failed validation\n{check}")
        label = f"onnxprune --target-macs {macs:.3f} --allocate {allocation}"
        out[label] = scratch / f"{allocation}.onnx"
        result.save(out[label], force=True)
    return out, {"budget": budget, "macs_fraction": macs, "prune_seconds": seconds}


def measure(original: Path, pruned: dict[str, Path], repeats: int, runs: int) -> list[dict[str, Any]]:
    reports: dict[str, list[dict[str, Any]]] = {label: [] for label in pruned}
    for _ in range(repeats):
        for label, path in pruned.items():
            reports[label].append(benchmark(original, path, runs=runs, warmup=5, threads=2).to_json())
    rows = []
    for label, runs_ in reports.items():
        rows.append(
            {
                "variant": label,
                "macs_fraction": runs_[0]["macs"][1] / runs_[0]["macs"][0],
                "params_fraction": runs_[0]["params"][1] / runs_[0]["params"][0],
                "speedup": statistics.median(r["speedup"] for r in runs_),
                "speedup_range": [min(r["speedup"] for r in runs_), max(r["speedup"] for r in runs_)],
                "roofline_speedup": runs_[0]["roofline_speedup"],
            }
        )
    return rows


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [
        f"# `--target-speedup {results['speedup']}`: measured, and against uniform and Torch-Pruning "
        "at equal MACs",
        "",
        f"Command: `{command}`. Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, onnxruntime "
        f"{m['onnxruntime']}, onnxprune {m['onnxprune_git']}; load average at the start {m['load_average']}.",
        "Timing: `onnxprune.bench.benchmark`, original vs pruned interleaved, 2 intra-op threads, batch 1, "
        f"224x224; median of {results['repeats']} benchmarks of {results['runs']} runs, variants "
        "taking turns.",
        "",
    ]
    for name, entry in results["models"].items():
        b = entry["onnxprune"]["budget"]
        lines += [
            f"## {name}",
            "",
            f"`--target-speedup {results['speedup']}`: {len(b['attempts'])} attempt(s), its own measurement "
            f"{b['measured_speedup']:.2f}x, MACs kept {entry['onnxprune']['macs_fraction']:.3f}, "
            f"prune {entry['onnxprune']['prune_seconds']:.0f} s. "
            + (f"Note: {b['note']}" if b.get("note") else ""),
            "",
            "| variant | MACs kept | params kept | measured speedup (range) | roofline speedup |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in entry["rows"]:
            lo, hi = r["speedup_range"]
            lines.append(
                f"| {r['variant']} | {r['macs_fraction']:.3f} | {r['params_fraction']:.3f} | "
                f"**{r['speedup']:.2f}x** ({lo:.2f}-{hi:.2f}) | {r['roofline_speedup'] or 0:.2f}x |"
            )
        lines += [
            "",
            "Attempts: "
            + "; ".join(
                f"budget {a['latency_budget']:.3f}: predicted {a['predicted_speedup']:.2f}x, measured "
                f"{a['measured_speedup']:.2f}x"
                for a in b["attempts"]
            ),
            "",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/onnxprune-bench"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "speedup_target.md")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": machine(),
        "speedup": args.speedup,
        "repeats": args.repeats,
        "runs": args.runs,
        "models": {},
    }
    for name in args.models:
        original = args.models_dir / f"{name}.onnx"
        with tempfile.TemporaryDirectory() as folder:
            scratch = Path(folder)
            pruned, info = onnxprune_variants(original, scratch, args.speedup)
            peer, peer_macs = peer_at_macs(name, info["macs_fraction"], scratch)
            pruned[f"torch-pruning 1.6.1 round_to=16 (MACs {peer_macs:.3f})"] = peer
            rows = measure(original, pruned, args.repeats, args.runs)
        results["models"][name] = {"onnxprune": info, "rows": rows}
        print(json.dumps(rows, indent=1), flush=True)
    command = "python benchmarks/speedup_target.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(markdown(results, command.strip()))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
