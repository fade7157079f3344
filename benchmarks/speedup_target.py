"""`--target-speedup 2.0` on full-width exports: measured speedup against the target, and against
uniform pruning and Torch-Pruning at the same MACs, all timed in one window.

    /tmp/venv-tv/bin/pip install torch-pruning==1.6.1
    /tmp/venv-tv/bin/python benchmarks/speedup_target.py --models-dir /tmp/onnxprune-bench

For each model (torchvision ResNet-50 and MobileNetV2 exported by `export_torchvision.py`, full
width, 224x224, batch 1):

1. ``onnxprune.prune(model, target_speedup=2.0)`` with the default alignment (``round_to=8``) and
   with 16: latency model, allocation, measure, repeat; its own measured speedup and attempts are
   recorded (`report.budget`);
2. Torch-Pruning 1.6.1 (uniform L2 magnitude, ``round_to=16``, classifier output kept), its ratio
   bisected towards the MACs fraction M of the first prune, exported with the dynamo exporter;
3. at the peer's own MACs fraction (counted by onnxprune), so the MACs are equal:
   ``prune(target_macs=..., allocation="uniform" | "global", round_to=16)``;
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

import onnx
import torch
import torch_pruning as tp
from export_torchvision import IMAGE, build, export
from speed import machine
from torch import nn

import onnxprune
from onnxprune.bench import benchmark
from onnxprune.metrics import count_macs

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
    """The speedup-targeted prunes, with the default alignment (8) and with 16 (the peer's)."""
    out: dict[str, Path] = {}
    info: dict[str, Any] = {}
    for round_to in (8, 16):
        start = time.perf_counter()
        targeted = onnxprune.prune(str(original), target_speedup=speedup, round_to=round_to)
        label = f"onnxprune --target-speedup {speedup:g} --round-to {round_to}"
        out[label] = scratch / f"target_{round_to}.onnx"
        targeted.save(out[label], force=True)
        info[label] = {
            "budget": dict(targeted.report.budget),
            "macs_fraction": targeted.report.macs_after / targeted.report.macs_before,
            "prune_seconds": time.perf_counter() - start,
        }
    return out, info


def at_macs(original: Path, scratch: Path, macs: float) -> dict[str, Path]:
    """onnxprune at the peer's MACs fraction, aligned like the peer (round_to 16)."""
    out = {}
    for allocation in ("uniform", "global"):
        result = onnxprune.prune(str(original), target_macs=macs, allocation=allocation, round_to=16)
        check = onnxprune.validate(str(original), result.model, result.plan)
        if not check:
            raise SystemExit(f"{original.name}: {allocation} prune failed validation\n{check}")
        label = f"onnxprune --target-macs {macs:.3f} --allocate {allocation} --round-to 16"
        out[label] = scratch / f"{allocation}.onnx"
        result.save(out[label], force=True)
    return out


def _macs_fraction(original: Path, pruned: Path) -> float:
    """The pruned model's MACs over the original's, counted by onnxprune."""
    return count_macs(onnx.load(pruned)) / count_macs(onnx.load(original))


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
        lines += [f"## {name}", ""]
        for label, info in entry["onnxprune"].items():
            b = info["budget"]
            lines.append(
                f"- `{label}`: {len(b['attempts'])} attempt(s) ("
                + "; ".join(
                    f"budget {a['latency_budget']:.3f}: predicted {a['predicted_speedup']:.2f}x, measured "
                    f"{a['measured_speedup']:.2f}x"
                    for a in b["attempts"]
                )
                + f"), MACs kept {info['macs_fraction']:.3f}, prune {info['prune_seconds']:.0f} s."
                + (f" Note: {b['note']}" if b.get("note") else "")
            )
        lines += [
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
        lines.append("")
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
            aim = info[next(iter(info))]["macs_fraction"]
            peer, peer_macs = peer_at_macs(name, aim, scratch)
            pruned[f"torch-pruning 1.6.1 round_to=16 (its MACs count {peer_macs:.3f})"] = peer
            peer_fraction = _macs_fraction(original, peer)
            pruned.update(at_macs(original, scratch, peer_fraction))
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
