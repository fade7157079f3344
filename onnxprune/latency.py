"""A latency model measured on the runtime the model ships to.

MACs are the wrong promise for speed: concatenations, normalizations, depthwise convolutions and
layout conversions cost in proportion to channels, and each kernel has its own efficiency. So
the model is measured: ONNX Runtime's profiler times every node of the model at full width and
at a few uniform widths (`MeasureSettings.widths`), and each node's time is fitted as
``a + b * work`` where work is the node's MACs at the narrowed shapes (for Conv, Gemm, MatMul)
or the elements it reads and writes (every other node). Kernel time the profiler reports under
names no node has (layout reorders, session overhead) is fitted the same way against the
elements all non-MAC nodes move. `LatencyCost.cost(kept)` then predicts the time of any kept
counts; budget targets search against it, and the pipeline measures the pruned model and
allocates again when the prediction was off (`onnxprune.pipeline.prune(target_speedup=...)`).

>>> costs = LatencyCost.build(model, analysis, table, MeasureSettings(), prune_at)  # doctest: +SKIP
>>> costs.fraction({})  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.analysis import DependencyAnalysis
from onnxprune.costs import AxisShrink, CostModel, Kept, narrowed
from onnxprune.latency_cache import LatencyCache, node_signature
from onnxprune.macs import NodeShapes
from onnxprune.metrics import MacTerms, mac_terms
from onnxprune.optable import OpTable
from onnxprune.runtime import make_feeds, profile_nodes
from onnxprune.targets import UniformRatio

_LAYOUT_SUFFIXES = ("_nchwc",)
"""Suffixes ONNX Runtime's layout transformer appends to the names of the nodes it converts."""


@dataclass(frozen=True)
class MeasureSettings:
    """How latency is measured: ONNX Runtime intra-op `threads`, `batch`, sizes of dynamic input
    dims, profiled runs after `warmup`, and the uniform ratios the model is also measured at.

    >>> MeasureSettings(threads=1).widths
    (0.25, 0.5, 0.75)
    """

    threads: int = 2
    batch: int = 1
    input_shapes: Mapping[str, Sequence[int]] | None = None
    runs: int = 20
    warmup: int = 5
    widths: tuple[float, ...] = (0.25, 0.5, 0.75)


class NodeWork:
    """The work of every node at narrowed shapes: MACs where the op table has a formula, else
    the elements of its inputs and outputs. Nodes are named by their first output."""

    def __init__(self, model: onnx.ModelProto, terms: MacTerms, shrink: AxisShrink) -> None:
        self.shapes = terms.shapes
        self.shrink = shrink
        by_output = {node.output[0]: (position, node, formula) for position, node, formula in terms.nodes}
        self.nodes = [(n.output[0], n, by_output.get(n.output[0])) for n in model.graph.node if n.output]
        self.names = {key for key, _, _ in self.nodes}
        self.mac_nodes = {key for key, _, found in self.nodes if found is not None}
        self.full = self.at({})

    def signatures(self, kept: Kept) -> dict[str, str]:
        """`node_signature` of every node when each group keeps `kept[group]` units."""
        sizes = self.shrink.sizes(kept)
        shapes = narrowed(self.shapes, sizes) if sizes else self.shapes
        return {key: node_signature(node, shapes) for key, node, _ in self.nodes}

    def at(self, kept: Kept) -> dict[str, float]:
        """Work of every node when each group keeps `kept[group]` units."""
        sizes = self.shrink.sizes(kept)
        shapes = narrowed(self.shapes, sizes) if sizes else self.shapes
        work = {}
        for key, node, found in self.nodes:
            if found is not None:
                position, counted, formula = found
                work[key] = float(formula(counted, NodeShapes(shapes, counted, position)))
            else:
                tensors = (*node.input, *node.output)
                work[key] = float(
                    sum(math.prod(s) for t in tensors if t and (s := shapes.get(t)) is not None)
                )
        return work


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) >= 0 of time = a + b * work, by least squares on `points` (work, time)."""
    work = np.array([p[0] for p in points], dtype=np.float64)
    time = np.array([p[1] for p in points], dtype=np.float64)
    if len(points) < 2 or np.ptp(work) <= 0:
        w = float(work.max()) if len(work) else 0.0
        return (0.0, float(time.mean()) / w) if w > 0 else (float(time.mean()) if len(time) else 0.0, 0.0)
    b = float(np.cov(work, time, bias=True)[0, 1] / np.var(work))
    a = float(time.mean() - b * work.mean())
    if b < 0:
        return float(time.mean()), 0.0
    if a < 0:
        return 0.0, float((work * time).sum() / (work * work).sum())
    return a, b


class LatencyCost(CostModel):
    """Predicted latency (microseconds) from per-node fits `a + b * work` and a fit of the time no
    node accounts for against the elements the non-MAC nodes move."""

    metric = "latency"

    def __init__(self, work: NodeWork, fits: Mapping[str, tuple[float, float]], other: tuple[float, float]):
        self.work = work
        self.fits = dict(fits)
        self.other = other
        self._full = self.cost({})

    @classmethod
    def build(
        cls,
        model: onnx.ModelProto,
        analysis: DependencyAnalysis,
        table: OpTable | None,
        settings: MeasureSettings,
        prune_at: Callable[[float], onnx.ModelProto],
    ) -> LatencyCost:
        """Measure `model` (normalized, shapes inferred) and `prune_at(ratio)` of it at each of
        `settings.widths`, and fit the model. `prune_at` prunes a copy uniformly with round_to 1."""
        terms = mac_terms(
            model, settings.input_shapes, batch=settings.batch, shapes_inferred=True, table=table
        )
        work = NodeWork(model, terms, AxisShrink.of(analysis))
        feeds = make_feeds(
            model,
            seed=0,
            input_shapes={k: list(v) for k, v in (settings.input_shapes or {}).items()},
            batch=settings.batch,
        )
        cache = LatencyCache.open(settings.threads)
        samples: list[tuple[dict[str, float], dict[str, float], float]] = []
        for ratio in (0.0, *settings.widths):
            target = UniformRatio(ratio, round_to=1)
            kept = {g.id: target.kept(g.size, g.kind) for g in analysis.prunable_groups}
            node_us, other_us = _measured(
                work, kept, cache, lambda r=ratio: model if r == 0 else prune_at(r), feeds, settings
            )
            samples.append((work.at(kept), node_us, other_us))
        cache.save()
        return cls(work, *_fits(work, samples))

    @property
    def full(self) -> float:
        return self._full

    def cost(self, kept: Kept) -> float:
        work = self.work.at(kept)
        total = sum(a + b * work.get(key, 0.0) for key, (a, b) in self.fits.items())
        a, b = self.other
        return total + a + b * _moved(self.work, work)


def _moved(node_work: NodeWork, work: Mapping[str, float]) -> float:
    return sum(w for key, w in work.items() if key not in node_work.mac_nodes)


def _measured(
    work: NodeWork,
    kept: Kept,
    cache: LatencyCache,
    pruned: Callable[[], onnx.ModelProto],
    feeds: Mapping[str, np.ndarray],
    settings: MeasureSettings,
) -> tuple[dict[str, float], float]:
    """Node times and the rest at `kept`: from the cache when every node's signature is there,
    else profiled on `pruned()` and stored (nodes ONNX Runtime fused away as 0)."""
    signatures = work.signatures(kept)
    rest_key = "rest|" + hashlib.sha256("\n".join(sorted(signatures.values())).encode()).hexdigest()
    found = cache.lookup([*signatures.values(), rest_key])
    if found is not None:
        return {key: found[sig] for key, sig in signatures.items()}, found[rest_key]
    node_us, other_us = _attributed(pruned(), feeds, work.names, settings)
    by_signature: dict[str, list[float]] = {}
    for key, sig in signatures.items():
        by_signature.setdefault(sig, []).append(node_us.get(key, 0.0))
    means = {sig: float(np.mean(times)) for sig, times in by_signature.items()}  # alike nodes, one time
    cache.store(means | {rest_key: other_us})
    return {key: means[sig] for key, sig in signatures.items()}, other_us


def _attributed(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: set[str], settings: MeasureSettings
) -> tuple[dict[str, float], float]:
    """Kernel microseconds per run of each node of `names` (by first output), and the rest."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for node in named.graph.node:
        if node.output:
            node.name = node.output[0]
    profile = profile_nodes(
        named, feeds, threads=settings.threads, runs=settings.runs, warmup=settings.warmup
    )
    node_us: dict[str, float] = {}
    for name, us in profile.node_us.items():
        key = next((name[: -len(s)] for s in _LAYOUT_SUFFIXES if name.endswith(s)), name)
        if key in names:
            node_us[key] = node_us.get(key, 0.0) + us
    other = max(profile.run_us - sum(node_us.values()), 0.0)
    return node_us, other


def _fits(
    work: NodeWork, samples: Sequence[tuple[dict[str, float], dict[str, float], float]]
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    fits = {}
    for key in work.names:
        points = [(w[key], us[key]) for w, us, _ in samples if key in us]
        if points:
            fits[key] = _fit(points)
    other = _fit([(_moved(work, w), rest) for w, _, rest in samples])
    return fits, other
