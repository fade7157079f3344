"""How a sweep's wall time scales with workers: 8 trials (ratios 0.1 ... 0.8; each prunes,
validates, times and measures fidelity) on 1 and 2 local worker processes and on a local Ray
instance with 2 CPUs, on this machine.

    python benchmarks/sweep_workers.py [--model /tmp/onnxprune-bench/resnet50.onnx] [--repeats 2]

Model: the full-width ResNet-50 of `benchmarks/export_torchvision.py` (random weights: time does
not depend on them). Each trial times the pruned model against the original over `--bench-runs`
interleaved runs with (cores / workers) ONNX Runtime threads, so every configuration uses the
same cores. The configurations run in turn, `--repeats` times (1, 2, Ray, 1, 2, Ray, ...), so a
change in the machine's load hits each alike; the load averages are recorded. The rows of every
run, timing columns aside, must be the same table (the script says so, or fails).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

from machine import cpu_model, git_state, load_average, ram_gib

from onnxprune.executors import LocalProcesses, RayExecutor
from onnxprune.sweep import ratio_specs, sweep

HERE = Path(__file__).resolve().parent
RERENDERED = " (this page rendered again from the JSON by --rerender)"
RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def _spin(seconds: float) -> float:
    """Busy-loop for `seconds` of wall time; the CPU seconds this process got meanwhile."""
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        pass
    return time.process_time() - cpu


def cpu_share_probe(seconds: float = 4.0) -> dict[int, float]:
    """Cores this script's processes get together when 1 and when 2 of them are busy (spawned
    like the sweep's workers): what more workers can gain on this machine at this moment."""
    shares = {}
    context = multiprocessing.get_context("spawn")
    for count in (1, 2):
        with context.Pool(count) as pool:
            pool.map(abs, range(count))  # started before timing
            shares[count] = round(sum(pool.map(_spin, [seconds] * count)) / seconds, 2)
    return shares


def run_once(model: str, label: str, bench_runs: int, threads: int | None) -> dict:
    """One sweep of the 8 trials on the executor `label` names; its wall time and table."""
    if label == "ray x2":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        executor = RayExecutor()
    else:
        executor = LocalProcesses(int(label.split("x")[-1]))
    load = load_average()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        report = sweep(model, ratio_specs(RATIOS), executor=executor, bench_runs=bench_runs, threads=threads)
    finally:
        if label == "ray x2":
            ray.shutdown()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # local workers, once their pool is closed
    worker_cpu = None if label == "ray x2" else after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    failed = [r.error for r in report.rows if not r.ok]
    print(
        f"{label}: {wall:.1f} s, worker CPU {worker_cpu} s, load {load} -> {load_average()}, failed {failed}",
        flush=True,
    )
    return {
        "executor": label,
        "wall_s": wall,
        "worker_cpu_s": worker_cpu,
        "load_before": load,
        "load_after": load_average(),
        "table": report.markdown(timing=False),
        "report": report.to_json(),
    }


def summary(runs: list[dict], labels: list[str]) -> list[dict]:
    rows = []
    base = statistics.median(r["wall_s"] for r in runs if r["executor"] == labels[0])
    for label in labels:
        mine = [r for r in runs if r["executor"] == label]
        walls = [r["wall_s"] for r in mine]
        median = statistics.median(walls)
        cpu = [r["worker_cpu_s"] for r in mine if r["worker_cpu_s"] is not None]
        row = {"executor": label, "walls": walls, "median": median, "vs_1": median / base}
        rows.append({**row, "worker_cpu": statistics.median(cpu) if cpu else None})
    return rows


def probe_note(meta: dict) -> list[str]:
    shares = meta.get("cpu_share_probe")
    if not shares:
        return []
    one, two = shares.get("1", shares.get(1)), shares.get("2", shares.get(2))
    return [
        f"CPU share probe before the runs (busy loops, 4 s): 1 process of this script got {one} "
        f"cores, 2 processes together {two}.",
        "",
    ]


def scheduler_note() -> str:
    """What the kernel's CPU scheduler does with a session's processes (autogroup)."""
    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "Scheduler autogroup: unknown."
    if not autogroup:
        return "Scheduler autogroup is off: every runnable thread gets its own share of the cores."
    return (
        "Scheduler autogroup is on: the kernel shares the cores fairly between sessions, not threads, "
        "so while other sessions keep both cores busy this sweep's processes, in one session, get one "
        "session's share whatever the number of workers."
    )


def run_meta() -> dict:
    """How and where the runs were made (kept in the JSON, so --rerender says the same)."""
    return {
        "cpu_share_probe": cpu_share_probe(),
        "argv": " ".join(sys.argv[1:]),
        "machine": f"{cpu_model()}, {ram_gib():.0f} GiB",
        "code": git_state(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write(
    out: Path, args: argparse.Namespace, runs: list[dict], rows: list[dict], same: bool, meta: dict
) -> None:
    lines = [
        "# Sweep wall time against workers",
        "",
        f"Written by `benchmarks/sweep_workers.py {meta['argv']}` "
        f"on {meta['machine']}, 2 cores shared with other jobs; code {meta['code']}; "
        f"{meta['date']}{RERENDERED if args.rerender else ''}. Model {Path(args.model).name}; "
        "8 trials, ratios "
        f"{RATIOS[0]} ... {RATIOS[-1]}, each: prune, validate (checker, ONNX Runtime, parity), "
        f"{args.bench_runs} interleaved timed runs against the original, fidelity on random feeds; "
        + (
            f"{args.threads} ONNX Runtime thread(s) per trial."
            if args.threads
            else "ONNX Runtime threads per trial: 2 cores / workers (the default)."
        ),
        "",
        "| executor | wall s (each run) | median s | median / 1 worker | worker CPU s | cores used |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        walls = ", ".join(f"{w:.1f}" for w in row["walls"])
        cpu = used = "n/a (Ray's workers)"
        if row["worker_cpu"] is not None:
            cpu, used = f"{row['worker_cpu']:.1f}", f"{row['worker_cpu'] / row['median']:.2f}"
        cells = f"{walls} | {row['median']:.1f} | {row['vs_1']:.2f} | {cpu} | {used}"
        lines.append(f"| {row['executor']} | {cells} |")
    loads = ", ".join(f"{r['executor']} {r['load_before'][0]}" for r in runs)
    lines += [
        "",
        f"1-minute load average when each run started (2 cores): {loads}. Worker CPU s: user + "
        "system seconds of the worker processes (medians); cores used: that over the median wall time.",
        "",
        scheduler_note(),
        "",
        *probe_note(meta),
        "Every run wrote the same table (timing columns aside): " + ("yes." if same else "NO."),
        "",
        runs[0]["table"],
        "",
    ]
    out.write_text("\n".join(lines))
    data = {"meta": meta, "runs": runs, "summary": rows}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/onnxprune-bench/resnet50.onnx")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bench-runs", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=None, help="ORT threads per trial (default 2 / workers)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "sweep_workers.md")
    parser.add_argument("--rerender", action="store_true", help="write the .md again from the .json")
    args = parser.parse_args()
    labels = ["local x1", "local x2", "ray x2"]
    meta = run_meta()
    if args.rerender:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        runs, meta = saved["runs"], saved.get("meta", {**meta, "argv": "(arguments not recorded)"})
    else:
        runs = [
            run_once(args.model, label, args.bench_runs, args.threads)
            for _ in range(args.repeats)
            for label in labels
        ]
    same = len({r["table"] for r in runs}) == 1
    write(args.out, args, runs, summary(runs, labels), same, meta)
    print(args.out.read_text())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
