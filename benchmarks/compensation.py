"""Cost and effect of compensation (`onnxprune.compensate`) after a structural prune.

    python benchmarks/compensation.py [--samples 64] [--ratio 0.3] [--models PATH ...]

For each model: prune at `--ratio` (criterion l1, defaults), keep the normalized original, then
compensate the structural prune three ways: ``bias`` without data (BatchNorm means), ``bias``
and ``lsq`` on `--samples` calibration samples (the API holds every 4th feed out to choose λ and
to revert). Reported: wall time and peak resident memory of the `compensate` call (RSS sampled
every 5 ms, minus the RSS when it started), model runs, consumers compensated, and fidelity of
the final model to the original on 32 held-out samples not used for calibration: mean cosine of
each sample's output vector, argmax agreement, and for CREPE the raw pitch accuracy (estimate
within 50 cents of the tone's frequency, argmax bin).

Models: the repo's reference models and the full-size exports in /tmp/onnxprune-bench (random
weights, random normal images: the numbers show mechanics and cost, not accuracy), and the
trained CREPE full at /work/cache-trained/crepe_full_dynamo.onnx when present (synthetic harmonic
tones, 1024-sample frames at 16 kHz, normalised per frame as torchcrepe does). Results go to
benchmarks/compensation.json and compensation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import onnx

from onnxprune.compensate import compensate
from onnxprune.runtime import ort_session
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import KeepReference, default_stages, run_stages
from onnxprune.targets import UniformRatio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_MODELS = [
    Path("/work/cache-trained/crepe_full_dynamo.onnx"),
    ROOT / "models/resnet_dynamo.onnx",
    ROOT / "models/torchvision/mobilenet_v2_dynamo.onnx",
    Path("/tmp/onnxprune-bench/mobilenet_v2.onnx"),
    Path("/tmp/onnxprune-bench/resnet50.onnx"),
    Path("/tmp/onnxprune-bench/densenet121.onnx"),
]
EVAL_SAMPLES = 32
BATCH = 8
SAMPLE_RATE = 16000
NOTES = "<!-- notes: kept when the table is regenerated -->"


def prune_keeping_original(path: Path, ratio: float):
    """(normalized original, structural prune, keeps) of one prune."""
    stages = default_stages()
    stages.insert(1, KeepReference())  # the normalized model, copied before anything is pruned
    session = run_stages(PruneSession.open(path, PruneOptions(UniformRatio(ratio))), stages)
    return session.reference, session.output, session.keeps


class PeakRss:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def image_feeds(model: onnx.ModelProto, count: int, seed: int) -> tuple[list[dict], None]:
    info = model.graph.input[0]
    dims = [d.dim_value for d in info.type.tensor_type.shape.dim][1:]
    rng = np.random.default_rng(seed)
    feeds = [
        {info.name: rng.standard_normal([BATCH, *dims]).astype(np.float32)} for _ in range(count // BATCH)
    ]
    return feeds, None


def tone_feeds(model: onnx.ModelProto, count: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Harmonic tones, f0 log-uniform in [60, 1000] Hz, random harmonics and phases."""
    rng = np.random.default_rng(seed)
    f0 = np.exp(rng.uniform(np.log(60.0), np.log(1000.0), count))
    t = np.arange(1024) / SAMPLE_RATE
    frames = np.zeros((count, 1024))
    for i, f in enumerate(f0):
        for h in range(1, 6):
            if h * f < SAMPLE_RATE / 2:
                frames[i] += rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 6.3))
    frames += 0.01 * rng.standard_normal(frames.shape)
    frames -= frames.mean(axis=1, keepdims=True)
    frames /= np.maximum(frames.std(axis=1, keepdims=True), 1e-10)
    name = model.graph.input[0].name
    feeds = [{name: frames[i : i + BATCH].astype(np.float32)} for i in range(0, count, BATCH)]
    return feeds, f0


def outputs(model: onnx.ModelProto, feeds: list[dict]) -> np.ndarray:
    session = ort_session(model)
    return np.concatenate([session.run(None, f)[0].reshape(len(next(iter(f.values()))), -1) for f in feeds])


def fidelity(got: np.ndarray, want: np.ndarray, f0: np.ndarray | None) -> dict:
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-30)
    row = {"cosine": float(cos.mean()), "argmax": float(np.mean(got.argmax(1) == want.argmax(1)))}
    if f0 is not None:
        cents = 20.0 * got.argmax(1) + 1997.3794084376191
        row["rpa"] = float(np.mean(np.abs(cents - 1200 * np.log2(f0 / 10.0)) < 50))
    return row


def run_model(path: Path, samples: int, ratio: float) -> list[dict]:
    original, structural, keeps = prune_keeping_original(path, ratio)
    make = tone_feeds if "crepe" in path.name else image_feeds
    calib, _ = make(original, samples, seed=0)
    held, f0 = make(original, EVAL_SAMPLES, seed=1)
    want = outputs(original, held)
    rows = [{"model": str(path), "method": "none", **fidelity(outputs(structural, held), want, f0)}]
    if f0 is not None:
        rows.insert(0, {"model": str(path), "method": "original", **fidelity(want, want, f0)})
    for row in rows:
        print(json.dumps(row), flush=True)
    for method, data in (("bias (data-free)", None), ("bias", calib), ("lsq", calib)):
        pruned = onnx.ModelProto()
        pruned.CopyFrom(structural)
        with PeakRss() as rss:
            start = time.perf_counter()
            report = compensate(original, pruned, keeps, data, method=method.split()[0])
            seconds = time.perf_counter() - start
        row = {
            "model": str(path),
            "method": method,
            "seconds": round(seconds, 2),
            "peak_mib": round(rss.mib, 1),
        }
        row |= {"runs": report.model_runs, "applied": report.applied, "consumers": len(report.consumers)}
        row |= fidelity(outputs(pruned, held), want, f0)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict], args) -> str:
    head = (
        f"# Compensation: cost and fidelity\n\n`python benchmarks/compensation.py --samples {args.samples} "
        f"--ratio {args.ratio}` ({os.cpu_count()} CPUs, ONNX Runtime 2 threads). Calibration: "
        f"{args.samples} samples (every 4th feed of {BATCH} held out for λ and revert); fidelity on "
        f"{EVAL_SAMPLES} other samples. Random-weight models on random inputs show mechanics and "
        "cost only.\n\n| model | method | seconds | peak MiB | runs | compensated | cosine | argmax | RPA |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = []
    for r in rows:
        cells = [
            Path(r["model"]).name
            if "onnxprune-bench" not in r["model"]
            else "bench/" + Path(r["model"]).name,
            r["method"],
            str(r.get("seconds", "")),
            str(r.get("peak_mib", "")),
            str(r.get("runs", "")),
            f"{r['applied']}/{r['consumers']}" if "applied" in r else "",
            f"{r['cosine']:.4f}",
            f"{r['argmax']:.3f}",
            f"{r['rpa']:.3f}" if "rpa" in r else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--models", nargs="*", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--out", type=Path, default=HERE / "compensation")
    args = parser.parse_args()
    rows = []
    for path in args.models:
        if path.exists():
            rows += run_model(path, args.samples, args.ratio)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    md = args.out.with_suffix(".md")
    notes = md.read_text().partition(NOTES)[2] if md.exists() else ""
    md.write_text(markdown(rows, args) + "\n" + NOTES + notes)


if __name__ == "__main__":
    main()
