"""Depth pruning on ResNet-50 and a 12-layer BERT-base export: 1-4 residual branches dropped,
measured speedup, parity.

    /work/venv-depth/bin/python benchmarks/depth.py [--runs N] [--out benchmarks/depth.md]

Models: /tmp/onnxprune-bench/resnet50.onnx and bert_base_dynamo.onnx (torchvision ResNet-50 and a
BERT-base configuration, both dynamo exports, batch dynamic; see that folder's PROVENANCE.json).
For each model and N in 1..4, `onnxprune.prune(model, drop_blocks=N)` twice: branches chosen by
`weight-norm` (no data) and by `block-influence` on the first 32 samples of the calibration file
beside the model (calib_images_256.npz / calib_tokens_256x128.npz). A BERT "branch" is one
attention or one MLP sublayer (a layer is two). Each result is checked by mask-equivalence parity
(`check_parity`: the original with each dropped branch times zero, random feeds) and timed with
`onnxprune.bench.benchmark` (original and pruned interleaved, batch 1, 2 threads; BERT at
sequence 128). Writes the table to --out and every figure to the .json beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from machine import HERE, cpu_model, git_state, load_average, ram_gib

import onnxprune
from onnxprune.bench import benchmark
from onnxprune.parity import check_parity

BENCH = Path("/tmp/onnxprune-bench")
MODELS = {
    "resnet50": (BENCH / "resnet50.onnx", None, BENCH / "calib_images_256.npz"),
    "bert_base_dynamo": (
        BENCH / "bert_base_dynamo.onnx",
        {n: [1, 128] for n in ("input_ids", "attention_mask", "token_type_ids")},
        BENCH / "calib_tokens_256x128.npz",
    ),
}
CALIB_SAMPLES = 32


def calibration(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k][:CALIB_SAMPLES] for k in data.files}


def row(name: str, count: int, criterion: str, runs: int) -> dict:
    path, shapes, calib = MODELS[name]
    start = time.process_time()
    kwargs = {"calibration": calibration(calib), "holdout": 0.0} if criterion != "weight-norm" else {}
    result = onnxprune.prune(str(path), drop_blocks=count, depth_criterion=criterion, **kwargs)
    seconds = time.process_time() - start
    parity = check_parity(str(path), result.model, result.plan, input_shapes=shapes, seeds=(0,))
    bench = benchmark(str(path), result.model, runs=runs, input_shapes=shapes)
    report = result.report
    return {
        "model": name,
        "drop_blocks": count,
        "criterion": criterion,
        "dropped": [d.add for d in result.plan.dropped],
        "params": [report.params_before, report.params_after],
        "macs": [report.macs_before, report.macs_after],
        "prune_cpu_s": round(seconds, 2),
        "parity_ok": bool(parity),
        "parity_rel_err": max((o.rel_err for o in parity.outputs), default=None),
        "latency_ms": [round(s.median_ms, 3) for s in bench.latency],
        "speedup": bench.speedup,
        "ideal_speedup": bench.ideal_speedup,
    }


def markdown(rows: list[dict], argv: list[str]) -> str:
    lines = [
        "# Depth pruning: ResNet-50 and BERT-base, 1-4 residual branches dropped",
        "",
        f"Command: `python benchmarks/depth.py {' '.join(argv)}`; code {git_state()}; "
        f"{cpu_model()}, {ram_gib():.0f} GiB, load average {load_average()} at the end "
        "(a shared machine: latencies are medians of interleaved runs, speedups are ratios of them).",
        "",
        "Branch choice: `weight-norm` (no data) or `block-influence` (1 - cos(x, x + f(x)) on "
        f"{CALIB_SAMPLES} calibration samples). BERT branches are sublayers (attention or MLP). "
        "Parity: pruned vs the original with the dropped branches multiplied by zero. params and "
        "MACs: fraction kept, MACs as the prune report counts them (BERT at sequence length 1); "
        "ideal: the MAC ratio at the timed shapes (BERT at sequence 128), measured: the speedup.",
        "",
        "| model | dropped | criterion | params | MACs | latency ms (orig -> pruned) | speedup "
        "| ideal (MACs) | parity rel err | prune CPU s | branches |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        p, m, lat = r["params"], r["macs"], r["latency_ms"]
        ok = f"{r['parity_rel_err']:.1e}" if r["parity_ok"] else f"FAIL {r['parity_rel_err']}"
        lines.append(
            f"| {r['model']} | {r['drop_blocks']} | {r['criterion']} | {p[1] / p[0]:.3f} "
            f"| {m[1] / m[0]:.3f} | {lat[0]} -> {lat[1]} | {r['speedup']:.3f} | {r['ideal_speedup']:.3f} "
            f"| {ok} | {r['prune_cpu_s']} | {', '.join(r['dropped'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=HERE / "depth.md")
    parser.add_argument("--from-json", type=Path, help="only rewrite the table from this .json")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        args.out.write_text(markdown(rows, ["(table rewritten from the .json of that run)"]))
        return 0
    rows = []
    for name in args.models:
        for criterion in ("weight-norm", "block-influence"):
            for count in (1, 2, 3, 4):
                rows.append(row(name, count, criterion, args.runs))
                print(json.dumps(rows[-1]), flush=True)
                args.out.write_text(markdown(rows, argv))
                args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
