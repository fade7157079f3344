"""Running the original and the pruned model side by side on the same feeds, reduced to sums.

Every run goes through `onnxprune.runtime` (`expose`, `ort_session`). For one level of
consumers, each model is cut to the nodes its exposed tensors need (`prefix_model`), so a
level deep in the network does not pay for the layers after it. Memory holds one batch's
exposed tensors and the sums.

Token models: padded positions (`onnxprune.calibration.mask_inputs`, `rows_of`) are left out of
every sum, so padding does not weigh in the means and the fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxprune.calibration import channel_stats, mask_inputs, rows_of
from onnxprune.compensate.consumers import Consumer
from onnxprune.compensate.solve import PairStats
from onnxprune.data import DataLoader
from onnxprune.graph import subgraph_reads
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
    run = prefix_model(original, list(xs))
    return channel_stats(original, xs, data, threads=threads, run=run, shapes=shapes)


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
