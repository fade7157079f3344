"""Sweeps: one trial per setting (prune, validate, bench, fidelity), run on worker processes or Ray.

A trial's setting is a dict of `onnxprune.prune` keyword arguments (`{"ratio": 0.3}`, or any
other target's keywords), so any prune option can be swept. Each trial prunes the model,
validates the result (checker, ONNX Runtime, mask-equivalence parity), times it against the
original interleaved, and measures the outputs' fidelity (on the held-out calibration samples,
or random feeds). A trial that raises is a row with its error; the sweep goes on.

With calibration data, the activation statistics are taken once, in the calling process
(`calibration_stats`), and shipped to every trial with the model (as `CalibrationData.stats`).

Trials run where an `Executor` sends them: `InProcess` (no workers), `LocalProcesses(n)`
(spawned processes: safe with ONNX Runtime's threads), or `RayExecutor` (a Ray cluster, the
optional extra `onnxprune[ray]`; imported only when asked for).

>>> specs = ratio_specs([0.2, 0.4])
>>> report = sweep("models/resnet_dynamo.onnx", specs, executor=LocalProcesses(2))  # doctest: +SKIP
>>> [row.ok for row in report.rows]  # doctest: +SKIP
[True, True]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxprune.bench import benchmark
from onnxprune.calibration import ActivationStats, calibration_data
from onnxprune.data import DataSource
from onnxprune.errors import UsageError
from onnxprune.executors import Executor, InProcess
from onnxprune.fidelity import check_fidelity
from onnxprune.io import LoadedModel, ModelLike, read_model
from onnxprune.pipeline import prune
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import Analyze, Calibrate, Normalize, run_stages
from onnxprune.validate import validate

TrialSpec = dict[str, Any]
"""Keyword arguments of `onnxprune.prune` for one trial (JSON-able values)."""

SHARED_KEYS = ("calibration", "calibration_samples", "holdout", "progress")
"""`prune` arguments a sweep sets itself, the same for every trial."""


def parse_ratios(text: str) -> list[float]:
    """`"0.1:0.6:0.1"` (start:stop:step, stop included) or `"0.2,0.4"` -> ratios.

    >>> parse_ratios("0.1:0.6:0.1"), parse_ratios("0.3, 0.5")
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.3, 0.5])
    """
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            return [round(start + i * step, 10) for i in range(count)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"ratios {text!r}: expected START:STOP:STEP (STEP > 0) or a list R1,R2,..."
        ) from None


def ratio_specs(ratios: Sequence[float], **common: Any) -> list[TrialSpec]:
    """One trial spec per ratio, each with the `common` prune arguments.

    >>> ratio_specs([0.2, 0.4], round_to=1)
    [{'round_to': 1, 'ratio': 0.2}, {'round_to': 1, 'ratio': 0.4}]
    """
    return [{**common, "ratio": float(r)} for r in ratios]


@dataclass
class TrialRow:
    """One trial's outcome. `ok` is False when the trial raised (`error` says what; the figures
    it did not reach are None); `valid` is the validation verdict (None: not validated).
    `speedup` is measured (median latency original / pruned), `ideal_speedup` the MACs ratio;
    `cosine` is the lowest and `rel_err` the highest over the outputs."""

    index: int
    spec: TrialSpec
    ok: bool = False
    error: str | None = None
    valid: bool | None = None
    params_before: int | None = None
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    ideal_speedup: float | None = None
    speedup: float | None = None
    latency_ms: float | None = None
    cosine: float | None = None
    rel_err: float | None = None
    argmax_agreement: float | None = None
    fidelity_source: str | None = None
    seconds: float = 0.0

    def label(self) -> str:
        """The spec as `key=value` pairs (`ratio=0.3`)."""
        return ", ".join(f"{k}={v}" for k, v in self.spec.items()) or "(defaults)"


TIMING_FIELDS = ("speedup", "latency_ms", "seconds")
"""Row fields that depend on the machine and the moment (the rest is the same on any executor)."""


@dataclass
class SweepReport:
    """Every trial's row, in spec order, and how the sweep ran (`to_json`, `table`)."""

    source: str
    executor: str
    workers: int
    rows: list[TrialRow]
    calibration: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (non-finite floats become None)."""
        data = dataclasses.asdict(self)
        for row in data["rows"]:
            for key, value in row.items():
                if isinstance(value, float) and not math.isfinite(value):
                    row[key] = None
        return data

    def table(self, *, timing: bool = True) -> list[list[str]]:
        """Rows (header first): settings, validity, params and MACs kept, speedups, fidelity,
        error; without `timing`, only what does not depend on the machine."""
        head = ["#", "settings", "valid", "params kept", "MACs kept", "ideal x", "cosine", "rel err"]
        head += ["speedup", "latency ms", "s"] if timing else []
        rows = [[*head, "error"]]
        for r in self.rows:
            cells = [str(r.index), r.label(), _yes(r.valid) if r.ok else "FAILED"]
            cells += [_share(r.params_after, r.params_before), _share(r.macs_after, r.macs_before)]
            cells += [_num(r.ideal_speedup, "{:.2f}"), _num(r.cosine, "{:.4f}"), _num(r.rel_err, "{:.3g}")]
            if timing:
                cells += [_num(r.speedup, "{:.2f}"), _num(r.latency_ms, "{:.2f}"), f"{r.seconds:.1f}"]
            rows.append([*cells, r.error or ""])
        return rows

    def markdown(self, *, timing: bool = True) -> str:
        """The table as Markdown."""
        return markdown_table(self.table(timing=timing))


def markdown_table(rows: list[list[str]]) -> str:
    """Rows (header first) as a Markdown table.

    >>> print(markdown_table([["a", "b"], ["1", "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x/y |
    """
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def _share(after: int | None, before: int | None) -> str:
    return "n/a" if after is None or not before else f"{100.0 * after / before:.1f}%"


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


@dataclass(frozen=True)
class TrialJob:
    """One trial's settings, sent to a worker (picklable). The model and the shared statistics
    travel beside it, once for all trials (`run_trial`'s keywords). `calibration` is the user's
    data source (a path or arrays)."""

    index: int
    spec: TrialSpec
    calibration: DataSource | None = None
    holdout: float = 0.2
    calibration_samples: int | None = None
    validate: bool = True
    bench_runs: int = 10
    threads: int = 1
    input_shapes: dict[str, list[int]] | None = None


def run_trial(job: TrialJob, *, model: ModelLike, activations: ActivationStats | None = None) -> TrialRow:
    """Prune `model` (a path, bytes or ModelProto) as `job` says, validate, bench and measure
    fidelity; never raises (an exception is the row's `error`)."""
    start = time.perf_counter()
    row = TrialRow(job.index, dict(job.spec))
    try:
        _trial_steps(job, row, model, activations)
        row.ok = True
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {exc}"
    row.seconds = time.perf_counter() - start
    return row


def failed_row(job: TrialJob, exc: BaseException) -> TrialRow:
    """The row of a trial whose worker died or could not run it."""
    return TrialRow(job.index, dict(job.spec), error=f"worker: {type(exc).__name__}: {exc}")


def _trial_steps(job: TrialJob, row: TrialRow, model: ModelLike, activations: ActivationStats | None) -> None:
    bad = sorted(set(job.spec) & set(SHARED_KEYS))
    if bad:
        raise UsageError(f"trial settings may not set {', '.join(bad)}: the sweep sets them for every trial")
    data = None
    if job.calibration is not None:
        data = calibration_data(job.calibration, samples=job.calibration_samples, holdout=job.holdout)
        data = dataclasses.replace(data, stats=activations)
    result = prune(model, **job.spec, calibration=data)
    report = result.report
    row.params_before, row.params_after = report.params_before, report.params_after
    row.macs_before, row.macs_after = report.macs_before, report.macs_after
    if report.macs_before and report.macs_after:
        row.ideal_speedup = report.macs_before / report.macs_after
    fidelity = None
    if job.validate:
        checked = validate(
            model,
            result.model,
            result.plan,
            structural=result.structural,
            fidelity=report.fidelity is None,  # held-out samples, when given, are measured by prune
            input_shapes=job.input_shapes,
        )
        row.valid = bool(checked)
        fidelity = checked.fidelity.to_json() if checked.fidelity is not None else None
    if report.fidelity is not None:  # held-out calibration samples beat random feeds
        fidelity = report.fidelity
    if fidelity is None:
        fidelity = check_fidelity(
            model, result.model, threads=job.threads, input_shapes=job.input_shapes
        ).to_json()
    _fidelity_figures(row, fidelity)
    if job.bench_runs:
        timed = benchmark(
            model, result.model, runs=job.bench_runs, threads=job.threads, input_shapes=job.input_shapes
        )
        row.speedup, row.latency_ms = timed.speedup, timed.latency[1].median_ms


def _fidelity_figures(row: TrialRow, fidelity: dict[str, Any]) -> None:
    if fidelity.get("error"):
        raise RuntimeError(f"fidelity: {fidelity['error']}")
    outputs = fidelity["outputs"]
    cosines = [o["cosine"] for o in outputs if o["cosine"] is not None]
    errors = [o["rel_err"] for o in outputs if o["rel_err"] is not None]
    agreement = [o["argmax_agreement"] for o in outputs if o["argmax_agreement"] is not None]
    row.cosine = min(cosines) if cosines else None
    row.rel_err = max(errors) if errors else None
    row.argmax_agreement = min(agreement) if agreement else None
    row.fidelity_source = fidelity["source"]


def calibration_stats(
    model: ModelLike,
    calibration: DataSource,
    *,
    samples: int | None = None,
    holdout: float = 0.2,
    progress: Callable[[int], None] | None = None,
) -> ActivationStats:
    """The activation statistics `prune(model, calibration=...)` would take (on the samples it
    does not hold out), for every prunable group: taken once, given to many prunes as
    `CalibrationData.stats`.

    >>> stats = calibration_stats("models/resnet_dynamo.onnx", "calib.npz")  # doctest: +SKIP
    >>> data = dataclasses.replace(calibration_data("calib.npz"), stats=stats)  # doctest: +SKIP
    >>> result = prune("models/resnet_dynamo.onnx", ratio=0.3, calibration=data)  # doctest: +SKIP
    """
    data = calibration_data(calibration, samples=samples, holdout=holdout)
    session = PruneSession.open(model, PruneOptions(target=None, calibration=data))
    run_stages(session, [Normalize(), Analyze(), Calibrate(progress)])
    return session.activations


def sweep(
    model: ModelLike,
    specs: Sequence[TrialSpec],
    *,
    executor: Executor | None = None,
    calibration: DataSource | None = None,
    calibration_samples: int | None = None,
    holdout: float = 0.2,
    validate: bool = True,
    bench_runs: int = 10,
    threads: int | None = None,
    input_shapes: dict[str, list[int]] | None = None,
) -> SweepReport:
    """Run one trial per spec (a dict of `prune` keyword arguments) on `executor` (default: in
    this process) and collect the rows, in spec order.

    `calibration` is a path or dict of arrays (it is sent to the workers); its statistics are
    taken here once. Each trial validates (unless `validate` is False) and times the pruned model
    against the original over `bench_runs` runs (0: no timing) with `threads` ONNX Runtime threads
    (default: this machine's cores shared among the workers); `input_shapes` give dynamic dims
    other than the batch (`{"input_ids": [1, 128]}`). Trials that run at the same time
    share the machine, so measured speedups are noisier than `onnxprune bench`'s.

    >>> report = sweep("models/default.onnx", ratio_specs([0.2, 0.5]), bench_runs=0)  # doctest: +SKIP
    >>> print(report.markdown())  # doctest: +SKIP
    """
    executor = executor or InProcess()
    if not specs:
        raise UsageError("a sweep needs at least one trial setting")
    if bench_runs < 0:
        raise UsageError(f"bench runs must be >= 0, got {bench_runs}")
    start = time.perf_counter()
    source = read_model(model, lazy=True)
    stats, summary = None, None
    if calibration is not None:
        stats = calibration_stats(model, calibration, samples=calibration_samples, holdout=holdout)
        summary = {"source": stats.source, "feeds": stats.feeds, "samples": stats.samples}
        summary["seconds"] = time.perf_counter() - start
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, executor.workers))
    jobs = [
        TrialJob(
            i,
            dict(spec),
            calibration,
            holdout,
            calibration_samples,
            validate,
            bench_runs,
            threads,
            input_shapes,
        )
        for i, spec in enumerate(specs)
    ]
    shared = {"model": _shipped(model, source, executor), "activations": stats}
    rows = executor.run(run_trial, jobs, shared=shared, on_error=failed_row)
    return SweepReport(
        source=source.name,
        executor=executor.describe(),
        workers=executor.workers,
        rows=rows,
        calibration=summary,
        seconds=time.perf_counter() - start,
    )


def _shipped(model: ModelLike, source: LoadedModel, executor: Executor) -> ModelLike:
    """The model as trials get it: its path on this machine; its bytes for remote workers, unless
    its weights live in external data files (then the path, which the workers must see too)."""
    if executor.remote and not source.external:
        return source.model.SerializeToString() if source.path is None else Path(source.path).read_bytes()
    return os.fspath(model) if isinstance(model, str | os.PathLike) else model


__all__ = [
    "TIMING_FIELDS",
    "SweepReport",
    "TrialJob",
    "TrialRow",
    "TrialSpec",
    "calibration_stats",
    "failed_row",
    "markdown_table",
    "parse_ratios",
    "ratio_specs",
    "run_trial",
    "sweep",
]
