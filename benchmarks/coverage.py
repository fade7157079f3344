"""Coverage table: every reference export of an architecture family, pruned at one ratio.

For each model in models/torchvision, models/keras, models/transformers, models/sequence,
models/quantized, models/keras_seq, models/controlflow and models/jax: the share of MACs
in layers with prunable channels, params and MACs before -> after `onnxprune.prune` with
default options, mask-equivalence parity (worst relative error over the validation feeds), and
the ONNX Runtime speedup from `onnxprune.bench.benchmark` (interleaved, CPU).

    python benchmarks/coverage.py [--ratio 0.4] [--runs 20] [--out benchmarks/coverage.md] [--readme]
        [--families sequence quantized ...]

`--readme` also replaces the table between the coverage markers in README.md; with `--families`,
only the rows of those families are measured and replaced (the other rows and the table's
header stay as they were).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import onnx
import onnxruntime
from machine import cpu_model

import onnxprune
from onnxprune.bench import benchmark

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = (
    "torchvision",
    "keras",
    "transformers",
    "sequence",
    "quantized",
    "keras_seq",
    "controlflow",
    "jax",
)
EXPORTER = {
    "keras": "tf2onnx",
    "keras_seq": "tf2onnx",
    "quantized": "onnxruntime.quantization",
    "jax": "jax2tf+tf2onnx",
}
"""Families whose file names carry no exporter suffix, and what made them."""
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"


def _text_shapes(model: onnx.ModelProto, batch: int, seq: int) -> dict[str, list[int]]:
    """[batch, seq] for token inputs, [batch, seq, features] for sequences of feature vectors."""
    shapes = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 2 and not dims[1].dim_value:
            shapes[vi.name] = [batch, seq]
        elif len(dims) == 3 and not dims[1].dim_value and dims[2].dim_value:
            shapes[vi.name] = [batch, seq, dims[2].dim_value]
    return shapes


def measure(path: Path, ratio: float, runs: int) -> dict:
    original = onnx.load(path)
    shapes = _text_shapes(original, 1, 32) or None
    started = time.perf_counter()
    result = onnxprune.prune(original, ratio=ratio)
    seconds = time.perf_counter() - started
    report = onnxprune.validate(original, result.model, result.plan, input_shapes=shapes)
    worst = max((o.rel_err for o in report.parity.outputs), default=None) if report.parity else None
    timing = benchmark(original, result.model, runs=runs, warmup=3, threads=2, input_shapes=shapes)
    r = result.report
    return {
        "family": path.parent.name,
        "model": path.stem.rsplit("_", 1)[0] if path.parent.name not in EXPORTER else path.stem,
        "exporter": EXPORTER.get(path.parent.name) or path.stem.rsplit("_", 1)[1],
        "prunable_macs": r.prunable_macs_fraction,
        "params": [r.params_before, r.params_after],
        "macs": [r.macs_before, r.macs_after],
        "valid": bool(report),
        "parity_rel_err": worst,
        "speedup": timing.speedup,
        "ideal": timing.ideal_speedup,
        "realised": timing.realised_fraction,
        "prune_s": seconds,
    }


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict], ratio: float, runs: int) -> str:
    load = os.getloadavg()
    lines = [
        f"`onnxprune m.onnx out.onnx --ratio {ratio}` (default options: round-to 8) on every reference "
        "export; "
        f"parity is the worst relative error of pruned vs masked original; speedup from `onnxprune.bench` "
        f"({runs} interleaved runs, batch 1, text models at sequence 32, 2 threads). Machine: {cpu_model()}, "
        f"{os.cpu_count()} cores, onnxruntime {onnxruntime.__version__}, load average {load[0]:.1f}. "
        "These are reduced-width exports (models/*/README.md): small layers, so latency gains are far "
        "below the MACs ratio; benchmarks/README.md measures full-width models.",
        "",
        "| family | model | exporter | MACs in prunable layers | params before → after | MACs before → after "
        "| valid | parity rel err | speedup | ideal | realised |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        p0, p1 = row["params"]
        m0, m1 = row["macs"]
        macs = "n/a" if m0 is None or m1 is None else f"{m0 / 1e6:.1f}M → {m1 / 1e6:.1f}M"
        timing = " | ".join(_fmt(row[k], ".2f") for k in ("speedup", "ideal", "realised"))
        lines.append(
            f"| {row['family']} | {row['model']} | {row['exporter']} | {_fmt(row['prunable_macs'], '.0%')} "
            f"| {p0 / 1e3:.1f}K → {p1 / 1e3:.1f}K | {macs} "
            f"| {'yes' if row['valid'] else 'NO'} | {_fmt(row['parity_rel_err'], '.1e')} | {timing} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, help="default benchmarks/coverage.md (coverage_<families>.md)")
    parser.add_argument("--readme", action="store_true", help="update the table in README.md too")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, help="measure only these families")
    args = parser.parse_args()
    rows = []
    for family in args.families or FAMILIES:
        provenance = json.loads((ROOT / "models" / family / "PROVENANCE.json").read_text())
        for name in sorted(provenance):
            row = measure(ROOT / "models" / family / name, args.ratio, args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    text = table(rows, args.ratio, args.runs)
    name = "coverage.md" if not args.families else f"coverage_{'_'.join(args.families)}.md"
    args.out = args.out or ROOT / "benchmarks" / name
    families = f" --families {' '.join(args.families)}" if args.families else ""
    args.out.write_text(
        f"# Coverage\n\nCommand: `python benchmarks/coverage.py --ratio {args.ratio} --runs "
        f"{args.runs}{families}`\n\n{text}\n"
    )
    if args.families and args.readme:
        merge_readme_rows(rows, set(args.families))
    elif args.readme:
        readme = ROOT / "README.md"
        content = readme.read_text()
        head, rest = content.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def merge_readme_rows(rows: list[dict], families: set[str]) -> None:
    """Replace the README table's rows of `families` with the lines of `rows` (appended after the
    other families' rows, in FAMILIES order); everything else in the table stays."""
    readme = ROOT / "README.md"
    content = readme.read_text()
    head, rest = content.split(START, 1)
    block, tail = rest.split(END, 1)
    new = table(rows, 0.0, 0).splitlines()[4:]  # the measured rows, without the header lines
    kept = [line for line in block.strip("\n").splitlines() if line.split(" | ")[0][2:] not in families]
    readme.write_text(f"{head}{START}\n" + "\n".join(kept + new) + f"\n{END}{tail}")


if __name__ == "__main__":
    main()
