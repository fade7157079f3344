"""Measured ONNX Runtime latency of a model, or of an original and its pruned version side by side.

`benchmark` runs each model in its own CPU session from `onnxprune.runtime` (all graph
optimisations, `threads` intra-op threads, one inter-op thread, thread-pool spinning off so an
idle session does not steal cores from the one running) on the same random inputs. With two
models the runs are interleaved, A B A B ..., so that drift in the machine's speed (frequency
scaling, a neighbour's load) hits both alike. The report gives the latency of each model and,
for two, the measured speedup next to the ideal one (the MAC ratio) and the fraction of it that
was realised.

>>> report = benchmark("model.onnx", "pruned.onnx", runs=30)  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
>>> report.realised_fraction  # doctest: +SKIP
0.83
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.errors import UsageError
from onnxprune.io import ModelLike, load_model
from onnxprune.metrics import ShapeUnknownError, count_macs, count_params, graph_inputs, tensor_dims
from onnxprune.roofline import machine_balance, roofline_us
from onnxprune.runtime import GRAPH_OPTIMIZATION_LEVEL, PROVIDER, make_feeds, ort_session, session_options

_FEED_SEED = 0


@dataclass
class SessionInfo:
    """How the ONNX Runtime sessions were configured (the same for every model of a report)."""

    provider: str
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization_level: str
    onnxruntime_version: str


@dataclass
class LatencyStats:
    """Wall-clock latency of one model over `runs` timed runs, in milliseconds.

    >>> LatencyStats.from_times([3.0, 1.0, 2.0]).median_ms
    2.0
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    runs: int

    @classmethod
    def from_times(cls, times_ms: Sequence[float]) -> LatencyStats:
        """Statistics of a list of run times (ms); p90 interpolates linearly between ranks."""
        if not times_ms:
            raise ValueError("no run times to summarise")
        return cls(
            median_ms=float(statistics.median(times_ms)),
            p90_ms=float(np.percentile(np.asarray(times_ms, dtype=np.float64), 90)),
            mean_ms=float(statistics.fmean(times_ms)),
            runs=len(times_ms),
        )


@dataclass
class BenchmarkReport:
    """Latency, size and cost of one or two models; ``to_json`` gives the JSON report.

    For two models (A then B), `speedup` is median latency A / median latency B, `ideal_speedup`
    is MACs A / MACs B (None where MACs could not be counted) and `realised_fraction` is
    speedup / ideal: 1.0 means the runtime turned every removed MAC into saved time.
    `input_shapes` are the shapes fed (batch included), `size_bytes` the serialized size of each
    model (external data included), `macs` are counted at those shapes.
    """

    models: list[str]
    batch: int
    input_shapes: dict[str, list[int]]
    warmup: int
    runs: int
    session: SessionInfo
    latency: list[LatencyStats]
    macs: list[int | None]
    params: list[int]
    size_bytes: list[int]
    speedup: float | None
    ideal_speedup: float | None
    realised_fraction: float | None
    roofline_speedup: float | None = None
    """Roofline time A / roofline time B (`onnxprune.roofline`): the ideal when memory-bound ops
    are counted by the bytes they move, not only MACs."""

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON values (``json.dumps`` accepts it)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchmarkReport:
        """Rebuild a report from ``to_json`` output (after a trip through ``json``)."""
        fields = dict(data)
        fields["session"] = SessionInfo(**fields["session"])
        fields["latency"] = [LatencyStats(**stats) for stats in fields["latency"]]
        fields["input_shapes"] = {name: list(shape) for name, shape in fields["input_shapes"].items()}
        return cls(**fields)

    def __str__(self) -> str:
        labels = ["A", "B"][: len(self.models)] if len(self.models) > 1 else [""]
        rows = [("model", "median ms", "p90 ms", "mean ms", "MACs", "params", "size")]
        for label, name, lat, macs, params, size in zip(
            labels, self.models, self.latency, self.macs, self.params, self.size_bytes, strict=True
        ):
            rows.append(
                (
                    f"{label} {_shorten(name)}".strip(),
                    f"{lat.median_ms:.3f}",
                    f"{lat.p90_ms:.3f}",
                    f"{lat.mean_ms:.3f}",
                    _human(macs),
                    _human(params),
                    _human(size, unit="B", base=1024),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        if len(self.models) > 1:
            parts = [
                f"speedup {_ratio(self.speedup)}",
                f"ideal (MACs) {_ratio(self.ideal_speedup)}",
                f"roofline {_ratio(self.roofline_speedup)}",
            ]
            if self.realised_fraction is not None:
                parts.append(f"realised {self.realised_fraction:.2f}")
            lines.append(", ".join(parts))
        shapes = ", ".join(f"{name} {list(shape)}" for name, shape in self.input_shapes.items())
        s = self.session
        lines.append(
            f"onnxruntime {s.onnxruntime_version} {s.provider}, {s.intra_op_threads} intra-op / "
            f"{s.inter_op_threads} inter-op threads, {s.graph_optimization_level}; "
            f"{self.runs} runs after {self.warmup} warm-up"
            f"{', interleaved' if len(self.models) > 1 else ''}; batch {self.batch}: {shapes}"
        )
        return "\n".join(lines)


def _shorten(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def _human(value: int | None, unit: str = "", base: int = 1000) -> str:
    if value is None:
        return "n/a"
    amount = float(value)
    for prefix in ("", "K", "M", "G", "T"):
        if abs(amount) < base or prefix == "T":
            return f"{amount:.0f}{unit}" if prefix == "" else f"{amount:.2f}{prefix}{unit}"
        amount /= base
    return str(value)  # pragma: no cover


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _signature(model: onnx.ModelProto) -> dict[str, tuple[int, tuple[int | None, ...] | None]]:
    """Fed inputs by name: element type and dims (None for a dynamic dim; None for unknown rank)."""
    signature = {}
    for info in graph_inputs(model):
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else -1
        dims = tensor_dims(info)
        signature[info.name] = (elem, None if dims is None else tuple(dims))
    return signature


def _describe(entry: tuple[int, tuple[int | None, ...] | None]) -> str:
    elem, dims = entry
    type_name = onnx.TensorProto.DataType.Name(elem) if elem >= 0 else "non-tensor"
    shape = (
        "unknown rank" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    )
    return f"{type_name} {shape}"


def check_same_inputs(model_a: onnx.ModelProto, model_b: onnx.ModelProto, names: Sequence[str]) -> None:
    """Raise UsageError unless both models take the same inputs: names, element types, static dims.

    Dynamic dims match each other whatever their symbolic names; a dynamic dim never matches a
    static one. `names` label the two models in the message.
    """
    sig_a, sig_b = _signature(model_a), _signature(model_b)
    problems = []
    for name in sorted(set(sig_a) - set(sig_b)):
        problems.append(f"input '{name}' is only in {names[0]}")
    for name in sorted(set(sig_b) - set(sig_a)):
        problems.append(f"input '{name}' is only in {names[1]}")
    for name in sorted(set(sig_a) & set(sig_b)):
        if sig_a[name] != sig_b[name]:
            problems.append(
                f"input '{name}' is {_describe(sig_a[name])} in {names[0]}, "
                f"{_describe(sig_b[name])} in {names[1]}"
            )
    if problems:
        raise UsageError(
            "cannot compare models whose inputs differ (same names, element types and static "
            "dims needed): " + "; ".join(problems)
        )


def _session(proto: onnx.ModelProto, source: str | None, threads: int) -> ort.InferenceSession:
    # A file on disk is handed to ONNX Runtime as a path (it reads any external data itself);
    # an in-memory model is serialized to bytes.
    return ort_session(source, threads, fallback=proto) if source is not None else ort_session(proto, threads)


def _load(model: ModelLike) -> tuple[onnx.ModelProto, str, str | None]:
    proto, name = load_model(model)
    is_file = isinstance(model, str | os.PathLike) and Path(model).is_file()
    return proto, name, os.fspath(model) if is_file else None


def _macs(model: onnx.ModelProto, shapes: dict[str, list[int]], batch: int) -> int | None:
    try:
        return count_macs(model, shapes, batch=batch)
    except ShapeUnknownError:
        return None


def _roofline(
    protos: list[onnx.ModelProto], shapes: dict[str, list[int]], batch: int, threads: int
) -> float | None:
    try:
        balance = machine_balance(threads)
        before, after = (roofline_us(proto, balance, shapes, batch) for proto in protos)
    except ShapeUnknownError:
        return None
    return _finite(before / after) if after > 0 else None


def _check_options(**options: int) -> None:
    for label, low in (("runs", 1), ("warmup", 0), ("threads", 1), ("batch", 1)):
        value = options[label]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{label} must be an integer >= {low}, got {value!r}")


def _time_interleaved(
    sessions: Sequence[ort.InferenceSession], feeds: dict[str, np.ndarray], *, warmup: int, runs: int
) -> list[LatencyStats]:
    """`warmup` untimed then `runs` timed inferences of each session, in turn: A B A B ..."""
    for _ in range(warmup):
        for session in sessions:
            session.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for session, record in zip(sessions, times, strict=True):
            start = time.perf_counter_ns()
            session.run(None, feeds)
            record.append((time.perf_counter_ns() - start) / 1e6)
    return [LatencyStats.from_times(record) for record in times]


def _speedups(latency: list[LatencyStats], macs: list[int | None]) -> tuple[float | None, ...]:
    """(speedup, ideal speedup, realised fraction) for two models; Nones for one."""
    speedup = ideal = realised = None
    if len(latency) == 2:
        speedup = latency[0].median_ms / latency[1].median_ms if latency[1].median_ms > 0 else None
        if macs[0] is not None and macs[1]:
            ideal = macs[0] / macs[1]
        if speedup is not None and ideal:
            realised = speedup / ideal
    return _finite(speedup), _finite(ideal), _finite(realised)


def benchmark(
    model_a: ModelLike,
    model_b: ModelLike | None = None,
    *,
    runs: int = 50,
    warmup: int = 5,
    threads: int = 2,
    batch: int = 1,
    input_shapes: dict[str, list[int]] | None = None,
) -> BenchmarkReport:
    """Time one model, or two (original A, pruned B) interleaved on the same inputs.

    Models are paths, bytes or ``onnx.ModelProto`` (never modified). Inputs are random (fixed
    seed), made once from model A: a dynamic dim 0 is `batch`, any other dynamic dim comes from
    `input_shapes` (full shapes by input name), else UsageError naming the input. The two models
    must take the same inputs (names, element types, static dims), else UsageError. Each session
    (`onnxprune.runtime.ort_session`) runs `warmup` untimed then `runs` timed inferences; with
    two, the order is A B A B ...

    >>> report = benchmark("resnet.onnx", "resnet_pruned.onnx", batch=8)  # doctest: +SKIP
    >>> report.speedup > 1  # doctest: +SKIP
    True
    """
    _check_options(runs=runs, warmup=warmup, threads=threads, batch=batch)
    loaded = [_load(model_a)] + ([] if model_b is None else [_load(model_b)])
    protos = [proto for proto, _, _ in loaded]
    names = [name for _, name, _ in loaded]
    if len(loaded) == 2:
        check_same_inputs(protos[0], protos[1], [f"model A ({names[0]})", f"model B ({names[1]})"])
    feeds = make_feeds(protos[0], seed=_FEED_SEED, input_shapes=input_shapes, batch=batch)
    if batch != 1 and not any(
        (dims := tensor_dims(info)) and dims[0] is None for info in graph_inputs(protos[0])
    ):
        raise UsageError(f"batch {batch} asked, but no input of {names[0]} has a dynamic dim 0")
    shapes = {name: [int(d) for d in array.shape] for name, array in feeds.items()}

    sessions = [_session(proto, source, threads) for proto, _, source in loaded]
    latency = _time_interleaved(sessions, feeds, warmup=warmup, runs=runs)
    provider = sessions[0].get_providers()[0]
    del sessions

    macs = [_macs(proto, shapes, batch) for proto in protos]
    speedup, ideal, realised = _speedups(latency, macs)
    roofline = _roofline(protos, shapes, batch, threads) if len(protos) == 2 else None
    return BenchmarkReport(
        models=names,
        batch=batch,
        input_shapes=shapes,
        warmup=warmup,
        runs=runs,
        session=SessionInfo(
            provider=provider,
            intra_op_threads=threads,
            inter_op_threads=1,
            graph_optimization_level=GRAPH_OPTIMIZATION_LEVEL,
            onnxruntime_version=ort.__version__,
        ),
        latency=latency,
        macs=macs,
        params=[count_params(proto) for proto in protos],
        size_bytes=[proto.ByteSize() for proto in protos],
        speedup=speedup,
        ideal_speedup=ideal,
        realised_fraction=realised,
        roofline_speedup=roofline,
    )


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


__all__ = [
    "GRAPH_OPTIMIZATION_LEVEL",
    "PROVIDER",
    "BenchmarkReport",
    "LatencyStats",
    "SessionInfo",
    "benchmark",
    "check_same_inputs",
    "session_options",
]
