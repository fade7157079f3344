"""Running the original and the pruned model side by side on the same feeds, reduced to sums.

Every run goes through `onnxprune.runtime` (`expose`, `ort_session`). For one level of
consumers, each model is cut to the nodes its exposed tensors need (`prefix_model`), so a
level deep in the network does not pay for the layers after it. Memory holds one batch's
exposed tensors and the sums.

Token models: a graph input whose name contains "mask" (any case), of an integer or bool type
and rank 2 ``[batch, tokens]``, is taken as an attention mask. For a consumer input shaped
``[batch, tokens, ...]`` (or flattened to ``[batch * tokens, C]``), positions where the mask is 0
are left out of every sum, so padding does not weigh in the means and the fits. Other inputs are
used whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.compensate.consumers import Consumer
from onnxprune.compensate.solve import PairStats
from onnxprune.data import DataLoader, IterableLoader
from onnxprune.graph import subgraph_reads
from onnxprune.metrics import graph_inputs
from onnxprune.runtime import expose, ort_session
from onnxprune.stats import ChannelStats


def prefix_model(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` with only the nodes `outputs` depend on, and `outputs` as its outputs."""
    needed = set(outputs)
    kept = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
            needed.update(subgraph_reads(node))
    cut = onnx.ModelProto(ir_version=model.ir_version)
    cut.opset_import.extend(model.opset_import)
    cut.functions.extend(model.functions)
    graph = model.graph
    g = cut.graph
    g.name = graph.name
    weights = {t.name for t in graph.initializer}
    g.input.extend(i for i in graph.input if i.name not in weights or i.name in needed)
    g.node.extend(reversed(kept))
    g.initializer.extend(t for t in graph.initializer if t.name in needed)
    return expose(cut, list(outputs))


def mask_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that look like attention masks (see the module docstring)."""
    found = []
    for info in graph_inputs(model):
        t = info.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) if t.elem_type else None
        rank = len(t.shape.dim) if t.HasField("shape") else None
        if "mask" in info.name.lower() and dtype is not None and dtype.kind in "iub" and rank == 2:
            found.append(info.name)
    return found


def rows_of(x: np.ndarray, axis: int, masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """x as (positions, channels), and which rows are real tokens if a mask fits its layout."""
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


def reiterable(loader: DataLoader) -> DataLoader:
    """A loader that can be read more than once (a one-shot iterator is read into a list)."""
    if isinstance(loader, IterableLoader) and iter(loader.items) is loader.items:
        return IterableLoader(list(loader.items), limit=loader.limit, source=loader.source)
    return loader


@dataclass(frozen=True)
class Subset(DataLoader):
    """Every feed of `base` whose index i has i % every == pick (pick=-1: all the others)."""

    base: DataLoader
    every: int
    pick: int

    @property
    def source(self) -> str:  # type: ignore[override]
        return f"{self.base.source} [{'held out' if self.pick >= 0 else 'fit'}]"

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[dict]:
        for index, feed in enumerate(self.base.feeds(model)):
            chosen = index % self.every == self.pick
            if chosen == (self.pick >= 0):
                yield feed


def _masks(feed: dict, names: list[str]) -> list[np.ndarray]:
    return [np.asarray(feed[n]) for n in names if n in feed]


def input_means(
    original: onnx.ModelProto,
    consumers: list[Consumer],
    data: DataLoader,
    threads: int,
    shapes: dict[str, tuple[int, ...]],
) -> dict[str, ChannelStats]:
    """Per-channel statistics of each consumer's original input x (padding excluded); the shape
    of each x goes into `shapes`."""
    xs = {c.x: c.axis for c in consumers}
    session = ort_session(prefix_model(original, list(xs)), threads)
    masks = mask_inputs(original)
    totals: dict[str, ChannelStats] = {}
    for feed in data.feeds(original):
        values = dict(zip(xs, session.run(list(xs), feed), strict=True))
        for name, value in values.items():
            shapes[name] = value.shape
            flat, rows = rows_of(value, xs[name], _masks(feed, masks))
            stats = ChannelStats.of(flat if rows is None else flat[rows], axis=1)
            totals[name] = totals[name].merge(stats) if name in totals else stats
    return totals


def pair_stats(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    consumers: list[Consumer],
    loaders: Sequence[DataLoader],
    threads: int,
    shapes: dict[str, tuple[int, ...]],
) -> list[dict[str, PairStats]]:
    """Joint sums of x (original model) and x' (pruned model) for each consumer, by its output,
    one dict per loader (the two sessions are built once for all of them); the shape of each x
    goes into `shapes`."""
    xs = list(dict.fromkeys(c.x for c in consumers))
    first = ort_session(prefix_model(original, xs), threads)
    second = ort_session(prefix_model(pruned, xs), threads)
    masks = mask_inputs(original)
    results = []
    for data in loaders:
        totals: dict[str, PairStats] = {}
        for feed in data.feeds(original):
            before = dict(zip(xs, first.run(xs, feed), strict=True))
            after = dict(zip(xs, second.run(xs, feed), strict=True))
            for c in consumers:
                shapes[c.x] = before[c.x].shape
                stats = _pair(c, before[c.x], after[c.x], _masks(feed, masks))
                totals[c.output] = totals[c.output].merge(stats) if c.output in totals else stats
        results.append(totals)
    return results


def _pair(c: Consumer, before: np.ndarray, after: np.ndarray, masks: list[np.ndarray]) -> PairStats:
    x, rows = rows_of(before, c.axis, masks)
    xp, _ = rows_of(after, c.axis, masks)
    if x.shape[0] != xp.shape[0] or x.shape[1] != c.channels or xp.shape[1] != len(c.kept):
        raise ValueError(f"'{c.x}' has {x.shape} values in the original and {xp.shape} pruned")
    return PairStats.of(x, xp, rows)
