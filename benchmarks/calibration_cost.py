"""What calibration and compensation cost: time and peak memory on a ResNet-50 over 256 images and
a BERT-base-size encoder over 256 sequences of 128 tokens, on this machine.

    python benchmarks/calibration_cost.py [--methods none bias lsq] [--out benchmarks/calibration_cost.md]

Models: the full-width ResNet-50 of `benchmarks/export_torchvision.py` and the BERT-base-size export
of `models/transformers/make_transformers.py --bench` (random weights: cost does not depend on them),
both in /tmp/onnxprune-bench. Data: 256 images drawn from N(0, 1) at 224 x 224; 256 sequences of
128 tokens from `transformer_speed.realistic_feeds` (token ids over the vocabulary, right-padded
attention masks). Each prune runs in its own process (peak memory is that process's maximum
resident set): ratio 0.3 (BERT: heads and FFN 0.3), criterion `activation`, no held-out split,
compensation none, bias or lsq; the table gives the CPU seconds of the calibrate and compensate
stages (`PruneReport.stage_seconds`), the wall time of the whole prune and the peak memory, next
to a prune without data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BENCH = Path("/tmp/onnxprune-bench")
SAMPLES = 256

CHILD = """
import json, resource, sys, time
import numpy as np
import onnxprune
model, data_path, method = sys.argv[1], sys.argv[2], sys.argv[3]
kwargs = json.loads(sys.argv[4])
if data_path != "-":
    kwargs.update(calibration=data_path, holdout=0.0, compensate=method)
start = time.perf_counter()
result = onnxprune.prune(model, **kwargs)
wall = time.perf_counter() - start
print(json.dumps({
    "wall_s": wall,
    "stages": result.report.stage_seconds,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "compensation": result.report.compensation,
}))
"""


def data_files(work: Path) -> dict[str, Path]:
    """The calibration sets as .npz files (made once)."""
    sys.path.insert(0, str(HERE))
    from transformer_speed import realistic_feeds

    files = {"resnet50": work / "calib_images_256.npz", "bert_base": work / "calib_tokens_256x128.npz"}
    if not files["resnet50"].exists():
        images = np.random.default_rng(0).standard_normal((SAMPLES, 3, 224, 224)).astype(np.float32)
        np.savez(files["resnet50"], x=images)
    if not files["bert_base"].exists():
        np.savez(files["bert_base"], **realistic_feeds(SAMPLES, 128, seed=0))
    return files


def run(model: Path, data: Path | str, method: str, kwargs: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(data), method, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        return {
            "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["none", "bias", "lsq"])
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert_base"])
    parser.add_argument("--out", type=Path, default=HERE / "calibration_cost.md")
    args = parser.parse_args(argv)
    files = data_files(BENCH)
    settings = {
        "resnet50": (BENCH / "resnet50.onnx", {"ratio": 0.3}),
        "bert_base": (BENCH / "bert_base_dynamo.onnx", {"head_ratio": 0.3, "ffn_ratio": 0.3}),
    }
    rows = []
    for name in args.models:
        path, kwargs = settings[name]
        base = run(path, "-", "none", kwargs)
        rows.append((name, "no data", base))
        print(name, "no data", base, flush=True)
        for method in args.methods:
            figures = run(path, files[name], method, kwargs)
            rows.append((name, method, figures))
            print(name, method, figures, flush=True)
    args.out.write_text(markdown(rows, argv))
    print(f"wrote {args.out}")
    return 0


def markdown(rows, argv) -> str:
    from machine import cpu_model, git_state, ram_gib

    lines = [
        "# Calibration and compensation cost",
        "",
        f"Written by `benchmarks/calibration_cost.py` (`{' '.join(argv or sys.argv[1:]) or 'defaults'}`) on "
        f"{cpu_model()}, {ram_gib():.0f} GiB, 2 cores; code {git_state()}; {time.strftime('%Y-%m-%d')}. "
        f"{SAMPLES} calibration samples (ResNet-50: 224 x 224 images; BERT-base: 128 tokens).",
        "",
        "| model | compensation | calibrate CPU s | compensate CPU s | prune wall s | peak MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, method, f in rows:
        if "error" in f:
            lines.append(f"| {name} | {method} | error: {f['error']} | | | |")
            continue
        calib, comp = (_seconds(f["stages"].get(stage)) for stage in ("calibrate", "compensate"))
        lines.append(f"| {name} | {method} | {calib} | {comp} | {f['wall_s']:.1f} | {f['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
