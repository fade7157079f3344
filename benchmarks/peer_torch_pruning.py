"""The peer's realised fraction next to onnxprune's, measured by the same bench in one window.

The issue "Measure what pruning buys" quotes Torch-Pruning 1.6.1's realised fractions at ratio
0.4 on this machine (0.31-0.75 by default, 0.79-0.97 with round_to=16). This script measures
them again with ``onnxprune.bench.benchmark``, beside onnxprune's own result on the same
exported model, so the two are judged by one method under one load:

1. build the torchvision model as benchmarks/export_torchvision.py does (seeded random weights,
   perturbed BatchNorm) and load its exported ONNX file from the cache folder;
2. prune the torch model with Torch-Pruning (uniform ratio, L2 magnitude, the classifier's
   output left alone, ``round_to`` as given) and export it the same way (dynamo, opset 18);
3. prune the exported original with ``onnxprune.prune`` (default options);
4. benchmark original vs each pruned model at batch 1 and 8, the variants taking turns, each
   benchmark interleaving its two models (A B A B ...).

Needs torch, torchvision and torch-pruning (not project dependencies):

    /tmp/venv-tv/bin/pip install torch-pruning==1.6.1
    /tmp/venv-tv/bin/python benchmarks/peer_torch_pruning.py --models-dir /tmp/onnxprune-bench

Writes benchmarks/peer_torch_pruning.md and .json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from export_torchvision import EXTRA_MODELS, IMAGE, build, export
from speed import machine
from torch import nn

import onnxprune
from onnxprune.bench import benchmark

HERE = Path(__file__).resolve().parent
MODELS = ("mobilenet_v2", "densenet121", "resnet50")
BATCHES = (1, 8)


def peer_prune(name: str, ratio: float, round_to: int | None) -> nn.Module:
    """Torch-Pruning's uniform L2 pruning of torchvision `name`, classifier output kept."""
    model = build(name)
    example = torch.randn((1, *IMAGE))
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=classifier,
        round_to=round_to,
    )
    pruner.step()
    return model.eval()


def variants(name: str, original: Path, ratio: float, scratch: Path) -> dict[str, Path]:
    """Pruned files by label: the peer without and with round_to=16, onnxprune by default."""
    out: dict[str, Path] = {}
    for round_to in (None, 16):
        label = f"torch-pruning round_to={round_to or 'off'}"
        path = scratch / f"{name}_tp_{round_to or 0}.onnx"
        export(peer_prune(name, ratio, round_to), path)
        out[label] = path
    path = scratch / f"{name}_onnxprune.onnx"
    result = onnxprune.prune(str(original), ratio=ratio)
    check = onnxprune.validate(str(original), result.model, result.plan)
    if not check:
        raise SystemExit(f"{name}: onnxprune's pruned model failed validation\n{check}")
    result.save(path, force=True)
    out["onnxprune default"] = path
    return out


def measure(original: Path, pruned: dict[str, Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (variant, batch) benchmarked `args.repeats` times, variants taking turns."""
    reports: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        for batch in BATCHES:
            for label, path in pruned.items():
                report = benchmark(
                    original, path, runs=args.runs, warmup=args.warmup, threads=args.threads, batch=batch
                )
                reports.setdefault((label, batch), []).append(report.to_json())
    rows = []
    for (label, batch), runs in reports.items():
        fractions = [r["realised_fraction"] for r in runs]
        rows.append(
            {
                "variant": label,
                "batch": batch,
                "macs": runs[0]["macs"],
                "params": runs[0]["params"],
                "ideal_speedup": runs[0]["ideal_speedup"],
                "speedup": statistics.median(r["speedup"] for r in runs),
                "realised_fraction": statistics.median(fractions),
                "realised_range": [min(fractions), max(fractions)],
                "reports": runs,
            }
        )
    return rows


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| model | variant | params M | GMACs (b1) | ideal "
        "| b1 speedup | b1 realised | b8 speedup | b8 realised |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        by_variant: dict[str, dict[int, dict[str, Any]]] = {}
        for row in rows:
            by_variant.setdefault(row["variant"], {})[row["batch"]] = row
        for label, batches in by_variant.items():
            b1, b8 = batches[1], batches[8]
            params = f"{b1['params'][0] / 1e6:.2f} → {b1['params'][1] / 1e6:.2f}"
            macs = f"{b1['macs'][0] / 1e9:.3f} → {b1['macs'][1] / 1e9:.3f}"
            cells = [
                f"{b['speedup']:.2f}|{b['realised_fraction']:.2f} "
                f"({b['realised_range'][0]:.2f}–{b['realised_range'][1]:.2f})"
                for b in (b1, b8)
            ]
            ideal = f"{b1['ideal_speedup']:.2f}"
            lines.append(f"| {name} | {label} | {params} | {macs} | {ideal} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/onnxprune-bench"))
    parser.add_argument("--models", nargs="+", choices=MODELS + EXTRA_MODELS, default=list(MODELS))
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "peer_torch_pruning.md")
    parser.add_argument("--json", type=Path, default=HERE / "peer_torch_pruning.json")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    # the installed distribution: torch_pruning.__version__ of the 1.6.1 wheel still says 1.6.0
    peer_version = importlib.metadata.version("torch-pruning")
    info = machine() | {"torch": torch.__version__, "torch_pruning": peer_version}
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            original = args.models_dir / f"{name}.onnx"
            pruned = variants(name, original, args.ratio, Path(tmp))
            results[name] = measure(original, pruned, args)
            print(table({name: results[name]}), flush=True)
    info["load_average_end"] = machine()["load_average"]
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/peer_torch_pruning.py " + " ".join(given)
    text = (
        f"# Torch-Pruning {peer_version} and onnxprune at ratio {args.ratio}, one bench, one window\n\n"
        f"`{command.strip()}`\n\n"
        f"Each cell: speedup | realised fraction, median of {args.repeats} interleaved benchmarks of "
        f"{args.runs} runs ({args.threads} intra-op threads), range in brackets.\n\n"
        f"{table(results)}\n\n```json\n{json.dumps(info, indent=2)}\n```\n"
    )
    args.out.write_text(text)
    args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
