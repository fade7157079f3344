"""Where the time goes: ONNX Runtime's optimised graph and per-node profile, original vs pruned.

For each model, the original and its pruned versions (one per --round-to value, at --ratio) are
loaded in the same CPU session setup as onnxprune.bench (ORT_ENABLE_ALL, 2 intra-op threads, no
spinning). For each it reports

* the optimised graph ONNX Runtime actually runs: how many convolutions it moved to its blocked
  NCHWc layout (domain com.microsoft.nchwc; the fast path of its x86 conv kernels), how many stayed
  plain NCHW (Conv / FusedConv: im2col + GEMM, or the NCHW depthwise kernel), and how many
  layout reorders (ReorderInput / ReorderOutput) it had to insert;
* the per-node kernel time from ORT's profiler, summed by kind, and for convolutions the
  executed MACs (from the shapes the profiler records) and the throughput in GMAC/s.

    /tmp/venv-tv/bin/python benchmarks/profile_ops.py --models-dir /tmp/onnxprune-bench \\
        --models mobilenet_v2 --ratio 0.4 --round-to 1 8 16

It prints markdown tables; benchmarks/README.md quotes them.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import onnxprune
from onnxprune.bench import session_options
from onnxprune.metrics import count_macs

NCHWC = "com.microsoft.nchwc"
CONV_OPS = {"Conv", "FusedConv"}


def conv_kind(event_args: dict[str, Any], node: onnx.NodeProto | None) -> str:
    shapes = event_args.get("input_type_shape", [])
    weight = next(iter(shapes[1].values())) if len(shapes) > 1 else []
    data = next(iter(shapes[0].values())) if shapes else []
    depthwise = len(weight) == 4 and weight[1] == 1 and len(data) >= 2 and data[1] > 1
    layout = "NCHWc" if node is not None and node.domain == NCHWC else "NCHW"
    return f"conv {layout} {'depthwise' if depthwise else 'dense'}"


def conv_macs(event_args: dict[str, Any]) -> int:
    shapes = event_args.get("input_type_shape", [])
    outputs = event_args.get("output_type_shape", [])
    if len(shapes) < 2 or not outputs:
        return 0
    weight = next(iter(shapes[1].values()))
    out = next(iter(outputs[0].values()))
    return math.prod(out) * math.prod(weight[1:])


def profile(path: Path, batch: int, runs: int, threads: int, scratch: Path) -> dict[str, Any]:
    options = session_options(threads)
    optimised = scratch / "optimised.onnx"
    options.optimized_model_filepath = str(optimised)
    options.enable_profiling = True
    options.profile_file_prefix = str(scratch / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(runs + 1):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    # the first run (arena growth, first-touch of weights) is a warm-up: drop its events
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    warm_end = model_runs[0]["ts"] + model_runs[0]["dur"] if len(model_runs) > 1 else -1
    timed_runs = len(model_runs) - 1 if len(model_runs) > 1 else runs
    graph = onnx.load(str(optimised), load_external_data=False).graph
    nodes = {n.name: n for n in graph.node}
    ops = collections.Counter((n.domain, n.op_type) for n in graph.node)
    time_us: dict[str, float] = collections.defaultdict(float)
    macs: dict[str, int] = collections.defaultdict(int)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < warm_end:
            continue
        args = event["args"]
        node = nodes.get(event["name"][: -len("_kernel_time")])
        op = args.get("op_name", "?")
        if op in CONV_OPS:
            kind = conv_kind(args, node)
            macs[kind] += conv_macs(args)
        elif op in ("ReorderInput", "ReorderOutput"):
            kind = "layout reorder"
        else:
            kind = f"other ({op})" if op in ("BatchNormalization", "Concat", "Add", "Relu") else "other"
        time_us[kind] += event["dur"]
    convs = sum(v for (d, op), v in ops.items() if op in CONV_OPS)
    return {
        "convs": convs,
        "convs_nchwc": ops.get((NCHWC, "Conv"), 0),
        "reorders": ops.get((NCHWC, "ReorderInput"), 0) + ops.get((NCHWC, "ReorderOutput"), 0),
        "batchnorm": sum(v for (d, op), v in ops.items() if op == "BatchNormalization"),
        "ms": {k: v / timed_runs / 1000 for k, v in time_us.items()},
        "gmacs": {k: v / timed_runs / 1e9 for k, v in macs.items()},
    }


def odd_channels(model: onnx.ModelProto, block: int) -> tuple[int, int]:
    """Convs whose output channel count is not a multiple of `block`, and the number of convs."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    odd = sum(1 for n in convs if weights.get(n.input[1], [0])[0] % block)
    return odd, len(convs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/onnxprune-bench"))
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2", "densenet121"])
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--round-to", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    everything = {}
    with tempfile.TemporaryDirectory(prefix="onnxprune-profile-") as tmp:
        scratch = Path(tmp)
        for name in args.models:
            path = args.models_dir / f"{name}.onnx"
            variants: list[tuple[str, Path, onnx.ModelProto]] = [("original", path, onnx.load(str(path)))]
            for round_to in args.round_to:
                result = onnxprune.prune(str(path), ratio=args.ratio, round_to=round_to)
                pruned = scratch / f"{name}_q{round_to}.onnx"
                result.save(pruned, force=True)
                variants.append((f"ratio {args.ratio}, round_to {round_to}", pruned, result.model))
            rows = []
            for label, file, model in variants:
                figures = profile(file, args.batch, args.runs, args.threads, scratch)
                figures["macs"] = count_macs(model, batch=args.batch)
                figures["odd8"], _ = odd_channels(model, 8)
                figures["odd16"], _ = odd_channels(model, 16)
                rows.append((label, figures))
            everything[name] = dict(rows)
            print(f"\n### {name}, batch {args.batch}\n")
            print(
                "| variant | GMACs | convs NCHWc / all | reorders | BN nodes | C_out % 8 ≠ 0 | "
                "C_out % 16 ≠ 0 | total kernel ms |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for label, f in rows:
                convs = f"{f['convs_nchwc']} / {f['convs']}"
                print(
                    f"| {label} | {f['macs'] / 1e9:.3f} | {convs} | {f['reorders']} | {f['batchnorm']} "
                    f"| {f['odd8']} | {f['odd16']} | {sum(f['ms'].values()):.1f} |"
                )
            kinds = sorted({k for _, f in rows for k in f["ms"]})
            print("\n| kind | " + " | ".join(label for label, _ in rows) + " |")
            print("|---|" + "---|" * len(rows))
            for kind in kinds:
                cells = []
                for _, f in rows:
                    ms = f["ms"].get(kind, 0.0)
                    gmac = f["gmacs"].get(kind)
                    rate = f", {gmac / (ms / 1000):.0f} GMAC/s" if gmac and ms else ""
                    cells.append(f"{ms:.2f} ms{rate}" if ms else "-")
                print(f"| {kind} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
