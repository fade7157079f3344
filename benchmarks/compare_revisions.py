"""The tool's own time at two git revisions, side by side: prune + save of one model by each,
alternating, next to a plain onnx.load + onnx.save.

On a shared machine whose speed drifts by 2x within minutes, two runs of `speed.py` made at
different times cannot tell a 20 % change from noise; here both revisions run in turn, each in its
own long-lived interpreter (imports and caches warm), so drift weighs on both alike. Each
revision is checked out into a temporary git worktree.

    python benchmarks/compare_revisions.py /tmp/onnxprune-bench/densenet121.onnx 2d07df2 HEAD
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in each child: prune + save (or a plain load + save) on every line read, answering with
# the CPU time of the process and the wall time, in seconds.
WORKER = """
import os, sys, time
import onnx
import onnxprune

path, ratio, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
onnxprune.prune(path, ratio=ratio).save(out, force=True)  # warm: imports, caches
for line in sys.stdin:
    cpu, wall = time.process_time(), time.perf_counter()
    if line.strip() == "plain":
        onnx.save(onnx.load(path), out + ".plain.onnx")
    else:
        onnxprune.prune(path, ratio=ratio).save(out, force=True)
    print(time.process_time() - cpu, time.perf_counter() - wall, flush=True)
"""


def checkout(rev: str, where: Path) -> Path:
    """A worktree of `rev` in `where`, importable as `onnxprune` (passes/ is onnxprune.passes)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True)
    (where / "onnxprune" / "passes").symlink_to(where / "passes", target_is_directory=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("revisions", nargs=2, help="two git revisions, e.g. 2d07df2 HEAD")
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        trees = [checkout(rev, Path(scratch) / f"rev{i}") for i, rev in enumerate(args.revisions)]
        try:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(args.model), str(args.ratio), f"{scratch}/{i}.onnx"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=dict(os.environ, PYTHONPATH=str(tree)),
                    cwd=scratch,
                )
                for i, tree in enumerate(trees)
            ]

            def ask(worker: subprocess.Popen, what: str) -> tuple[float, float]:
                worker.stdin.write(what + "\n")
                worker.stdin.flush()
                cpu, wall = worker.stdout.readline().split()
                return float(cpu), float(wall)

            times: list[list[tuple[float, float]]] = [[], [], []]  # each revision, then plain
            for _ in range(args.repeats):
                for i, worker in enumerate(workers):
                    times[i].append(ask(worker, "prune"))
                times[2].append(ask(workers[0], "plain"))
            for worker in workers:
                worker.stdin.close()
                worker.wait()
        finally:
            for tree in trees:
                remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)]
                subprocess.run(remove, check=False)

    plain_cpu = statistics.median(t[0] for t in times[2])
    plain_wall = statistics.median(t[1] for t in times[2])
    print(f"{args.model.name}, ratio {args.ratio}: medians of {args.repeats}, alternating")
    print(f"  onnx.load + onnx.save   CPU {plain_cpu * 1e3:7.1f} ms   wall {plain_wall * 1e3:7.1f} ms")
    for rev, runs in zip(args.revisions, times, strict=False):
        cpu = statistics.median(t[0] for t in runs)
        wall = statistics.median(t[1] for t in runs)
        print(
            f"  prune + save at {rev:8s} CPU {cpu * 1e3:7.1f} ms   wall {wall * 1e3:7.1f} ms"
            f"   ({cpu / plain_cpu:.1f}x / {wall / plain_wall:.1f}x the plain load + save)"
        )


if __name__ == "__main__":
    main()
