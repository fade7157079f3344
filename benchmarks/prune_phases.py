"""Where the tool's own time goes: CPU time of each stage of `onnxprune.prune` + save.

Reads the CPU time of each stage (load, normalize, analyze, score, select, plan, count, apply,
cleanup: `PruneReport.stage_seconds`) and times the save, runs `--repeats` prunes of each
model in one process, and prints the median CPU
milliseconds of each phase next to a plain `onnx.load` + `onnx.save` of the same file. CPU time
(``time.process_time``) rather than wall time, so that other jobs on a shared machine weigh less.

    python benchmarks/prune_phases.py /tmp/onnxprune-bench/densenet121.onnx --ratio 0.4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import onnx

import onnxprune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "pruned.onnx"
        for path in args.models:
            runs: list[dict[str, float]] = []
            plain: list[float] = []
            for _ in range(args.repeats + 1):  # the first run warms caches and lazy imports
                start = time.process_time()
                result = onnxprune.prune(str(path), ratio=args.ratio)
                save_start = time.process_time()
                result.save(out, force=True)
                record = dict(result.report.stage_seconds)
                record["save"] = time.process_time() - save_start
                record["total"] = time.process_time() - start
                runs.append(record)
                start = time.process_time()
                onnx.save(onnx.load(str(path)), str(Path(scratch) / "plain.onnx"))
                plain.append(time.process_time() - start)
            runs, plain = runs[1:], plain[1:]
            total = statistics.median(r["total"] for r in runs)
            print(f"\n{path.name}, ratio {args.ratio}: CPU ms, median of {args.repeats}")
            labels = list(runs[0])
            labels.remove("total")
            for label in sorted(labels, key=lambda k: -statistics.median(r.get(k, 0.0) for r in runs)):
                ms = 1000 * statistics.median(r.get(label, 0.0) for r in runs)
                print(f"  {label:12s} {ms:7.1f}  {100 * ms / (1000 * total):4.0f} %")
            print(f"  {'total':12s} {1000 * total:7.1f}")
            load_save = statistics.median(plain)
            print(
                f"  onnx.load + onnx.save {1000 * load_save:.1f} CPU ms ({total / load_save:.1f}x in CPU "
                "time; the target compares wall time, see prune_time.md)"
            )


if __name__ == "__main__":
    main()
