"""Calibration: the user's samples, split into the ones statistics are taken on and the ones
fidelity is measured on, and the per-channel statistics of every activation a prunable weight
multiplies.

A consumer (Conv with one group, Gemm, MatMul by a constant) reads an activation `x` and a weight
`W` whose input axis runs along x's channels: removing channel c from `x` removes `W[:, c] · x_c`
from the consumer's output. Its statistics (`ChannelStats`: sums of x, |x|, x² per channel) are
what activation-aware importance criteria (`onnxprune.importance.activation`) read. For token
models, padded positions (`mask_inputs`) are left out.

>>> data = calibration_data({"x": np.zeros((10, 3), np.float32)}, holdout=0.2)
>>> data.holdout is not None, data.fit.source
(True, '<arrays> (4 of every 5 feeds)')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxprune.analysis import DependencyAnalysis
from onnxprune.data import DataLoader, DataSource, IterableLoader, open_data
from onnxprune.errors import UsageError
from onnxprune.graph import is_default_domain
from onnxprune.metrics import graph_inputs
from onnxprune.runtime import expose, ort_session
from onnxprune.stats import ChannelStats

DEFAULT_BATCH = 8
"""Samples per ONNX Runtime run when the model's batch dim is dynamic."""


@dataclass(frozen=True)
class SplitLoader(DataLoader):
    """Every `period`-th feed of `base` (those at index `period - 1`, `2 * period - 1`, ...) when
    `held_out`, every other feed when not: a deterministic split that needs no second pass."""

    base: DataLoader
    period: int
    held_out: bool

    @property
    def source(self) -> str:  # type: ignore[override]
        share = f"1 of every {self.period}" if self.held_out else f"{self.period - 1} of every {self.period}"
        return f"{self.base.source} ({share} feeds)"

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[Mapping[str, Any]]:
        for index, feed in enumerate(self.base.raw_feeds(model)):
            if (index % self.period == self.period - 1) == self.held_out:
                yield feed


@dataclass(frozen=True)
class CalibrationData:
    """The samples statistics are taken on (`fit`) and those fidelity is measured on (`holdout`,
    None when there are none)."""

    fit: DataLoader
    holdout: DataLoader | None = None
    stats: ActivationStats | None = None
    """Statistics already taken on `fit` (a sweep takes them once for all its trials): the
    calibrate stage uses them instead of running the model again."""


def calibration_shapes(
    calibration: CalibrationData | None, model: onnx.ModelProto, batch: int
) -> dict[str, list[int]] | None:
    """Input shapes of the first calibration feed (batch axis set to `batch`): the sizes of dynamic
    dims (sequence length, image size) costs are counted at when no input shapes were given."""
    if calibration is None:
        return None
    first = next(iter(calibration.fit.feeds(model)), None)
    return None if first is None else {name: [batch, *a.shape[1:]] for name, a in first.items()}


def calibration_data(
    source: DataSource,
    *,
    samples: int | None = None,
    eval_data: DataSource | None = None,
    holdout: float = 0.2,
    batch: int = DEFAULT_BATCH,
) -> CalibrationData:
    """Open the user's calibration data (anything `onnxprune.data.open_data` reads; an iterator is
    read once into a list, as it is read several times). `samples` limits it; with `eval_data`,
    that is the held-out set, else every round(1 / `holdout`)-th feed of `source` is held out
    (`holdout` 0: none)."""
    if not 0.0 <= holdout < 1.0:
        raise UsageError(f"holdout {holdout} is outside [0, 1)")
    fit = reiterable(open_data(source, batch=batch, limit=samples))
    if eval_data is not None:
        return CalibrationData(fit, open_data(eval_data, batch=batch))
    if holdout == 0.0:
        return CalibrationData(fit)
    period = max(2, round(1.0 / holdout))
    return CalibrationData(SplitLoader(fit, period, held_out=False), SplitLoader(fit, period, held_out=True))


@dataclass(frozen=True)
class WeightInput:
    """A weight a consumer multiplies with an activation: `weight`'s axis `weight_axis` runs along
    `activation`'s axis `activation_axis` (a negative axis counts from the end)."""

    node: str
    op_type: str
    weight: str
    weight_axis: int
    activation: str
    activation_axis: int


def weight_inputs(model: onnx.ModelProto) -> dict[str, WeightInput]:
    """Every constant weight of the main graph read as Conv (one group) W, Gemm B or MatMul B, by
    weight name (a weight read by several consumers: the first)."""
    constants = {t.name: len(t.dims) for t in model.graph.initializer}
    found: dict[str, WeightInput] = {}
    for node in model.graph.node:
        if not is_default_domain(node.domain) or len(node.input) < 2 or node.input[1] not in constants:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        x, w = node.input[0], node.input[1]
        if node.op_type == "Conv" and attrs.get("group", 1) == 1:
            wi = WeightInput(node.name, "Conv", w, 1, x, 1)
        elif node.op_type == "Gemm" and not attrs.get("transA", 0):
            wi = WeightInput(node.name, "Gemm", w, 1 if attrs.get("transB", 0) else 0, x, 1)
        elif node.op_type == "MatMul" and constants[w] >= 2:
            wi = WeightInput(node.name, "MatMul", w, constants[w] - 2, x, -1)
        else:
            continue
        found.setdefault(w, wi)
    return found


@dataclass
class ActivationStats:
    """Per-channel statistics of the activations prunable weights multiply, by activation name;
    `inputs` says which activation each weight reads (by weight name)."""

    channels: dict[str, ChannelStats]
    inputs: dict[str, WeightInput]
    source: str = ""
    feeds: int = 0
    samples: int = 0
    skipped: list[str] = field(default_factory=list)

    def of_weight(self, weight: str, axis: int) -> ChannelStats | None:
        """The statistics of the activation `weight`'s axis `axis` multiplies, or None."""
        wi = self.inputs.get(weight)
        if wi is None or wi.weight_axis != axis:
            return None
        return self.channels.get(wi.activation)


def collect_activation_stats(
    model: onnx.ModelProto,
    analysis: DependencyAnalysis,
    data: DataLoader,
    *,
    threads: int = 2,
    tick: Callable[[int], None] | None = None,
) -> ActivationStats:
    """Run `model` (the normalized model the analysis was made on) over `data` and sum the
    per-channel statistics of every activation read against a weight axis of role "in" of a
    prunable group; `tick(samples)` is called after each feed."""
    inputs = weight_inputs(model)
    wanted: dict[str, int] = {}
    for group in analysis.prunable_groups:
        for member in group.weight_members:
            wi = inputs.get(member.tensor)
            if member.role == "in" and wi is not None and wi.weight_axis == member.axis:
                wanted[wi.activation] = wi.activation_axis
    counted = CountingLoader(data, tick)
    channels = channel_stats(model, wanted, counted, threads=threads) if wanted else {}
    return ActivationStats(channels, inputs, data.source, counted.fed, counted.samples)


def mask_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that mark real tokens: integer or bool, rank 2 (`[batch, tokens]`), with "mask"
    in the name (`attention_mask`). Positions where one is 0 are padding."""
    found = []
    for info in graph_inputs(model):
        t = info.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) if t.elem_type else None
        rank = len(t.shape.dim) if t.HasField("shape") else None
        if "mask" in info.name.lower() and dtype is not None and dtype.kind in "iub" and rank == 2:
            found.append(info.name)
    return found


def rows_of(x: np.ndarray, axis: int, masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """`x` as (positions, channels), and which rows are real tokens when a mask fits its layout:
    `[batch, tokens, ..., channels]`, or `[batch * tokens, channels]` (None: every row)."""
    axis = axis % x.ndim
    flat = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    if axis != x.ndim - 1:
        return flat, None
    for mask in masks:
        if x.ndim >= 3 and x.shape[:2] == mask.shape:
            spread = mask.reshape(mask.shape + (1,) * (x.ndim - 3))
            return flat, np.broadcast_to(spread, x.shape[:-1]).reshape(-1) != 0
        if x.ndim == 2 and x.shape[0] == mask.size:
            return flat, mask.reshape(-1) != 0
    return flat, None


def channel_stats(
    model: onnx.ModelProto,
    tensors: Mapping[str, int],
    data: DataLoader,
    *,
    threads: int = 2,
    run: onnx.ModelProto | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, ChannelStats]:
    """Per-channel sums of `tensors` (name -> channel axis) of `model` over `data`, one batch in
    memory at a time, padded tokens (`mask_inputs`) left out. `run` is the model to run when not
    `model` with the tensors exposed (a copy cut to what they need); `shapes` receives each
    tensor's shape."""
    names = list(tensors)
    session = ort_session(run if run is not None else expose(model, names), threads)
    masks = mask_inputs(model)
    totals: dict[str, ChannelStats] = {}
    for feed in data.feeds(model):
        present = [np.asarray(feed[m]) for m in masks if m in feed]
        for name, value in zip(names, session.run(names, feed), strict=True):
            if shapes is not None:
                shapes[name] = value.shape
            flat, rows = rows_of(value, tensors[name], present)
            batch = ChannelStats.of(flat if rows is None else flat[rows], axis=1)
            totals[name] = totals[name].merge(batch) if name in totals else batch
    return totals


def reiterable(loader: DataLoader) -> DataLoader:
    """A loader that can be read more than once (a one-shot iterator is read into a list)."""
    if isinstance(loader, IterableLoader) and iter(loader.items) is loader.items:
        return IterableLoader(list(loader.items), limit=loader.limit, source=loader.source)
    return loader


@dataclass
class CountingLoader(DataLoader):
    """`base`, counting the feeds and samples it yields, and calling `tick(samples)` after each
    (a progress bar)."""

    base: DataLoader
    tick: Callable[[int], None] | None = None
    fed: int = 0
    """Feeds yielded so far."""
    samples: int = 0

    @property
    def source(self) -> str:  # type: ignore[override]
        return self.base.source

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[Mapping[str, Any]]:
        for feed in self.base.raw_feeds(model):
            first = next(iter(feed.values()), None)
            samples = int(np.shape(first)[0]) if np.ndim(first) else 1
            yield feed
            self.fed += 1
            self.samples += samples
            if self.tick is not None:
                self.tick(samples)
