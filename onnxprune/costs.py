"""Cost models: what a model costs (MACs, parameters) as a function of how many units each
coupling group keeps, without pruning it.

Every axis a group touches loses `positions per unit` entries for each unit the group removes
(`AxisShrink`); a cost model re-evaluates the model's own formulas at the narrowed shapes: the
MAC formulas of the op table at the narrowed activation and weight shapes (`MacsCost`), the
element counts of the narrowed float weights (`ParamsCost`). Budget targets
(`onnxprune.budget`) search kept counts against these; the measured latency model is
`onnxprune.latency.LatencyCost`.

>>> costs = MacsCost.build(model, analysis)  # doctest: +SKIP
>>> costs.fraction({group.id: group.size // 2})  # doctest: +SKIP
0.62
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx

from onnxprune.analysis import DependencyAnalysis, Dim
from onnxprune.metrics import MacTerms, mac_terms, param_tensors
from onnxprune.optable import OpTable

Kept = Mapping[int, int]
"""Group id -> units kept (a group not named keeps all its units)."""


@dataclass(frozen=True)
class AxisShrink:
    """How the axes the groups touch shrink: `per_dim[(tensor, axis)]` lists (group id, entries
    per unit) for every group with units on that axis.

    >>> shrink = AxisShrink({("w", 0): ((3, 2),)}, {("w", 0): 16}, {3: 8})
    >>> shrink.sizes({3: 5})
    {('w', 0): 10}
    """

    per_dim: Mapping[Dim, tuple[tuple[int, int], ...]]
    dim_sizes: Mapping[Dim, int]
    group_sizes: Mapping[int, int]

    @classmethod
    def of(cls, analysis: DependencyAnalysis) -> AxisShrink:
        per_dim: dict[Dim, list[tuple[int, int]]] = defaultdict(list)
        for group in analysis.prunable_groups:
            for member in group.members:
                per_dim[(member.tensor, member.axis)].append((group.id, int(member.positions.shape[1])))
        return cls(
            {dim: tuple(entries) for dim, entries in per_dim.items()},
            analysis.dim_sizes,
            {g.id: g.size for g in analysis.prunable_groups},
        )

    def sizes(self, kept: Kept) -> dict[Dim, int]:
        """Size of every axis that loses entries when each group keeps `kept[group]` units."""
        found = {}
        for dim, entries in self.per_dim.items():
            removed = sum((self.group_sizes[g] - kept[g]) * per_unit for g, per_unit in entries if g in kept)
            if removed:
                found[dim] = self.dim_sizes[dim] - removed
        return found

    def tensors_of(self, groups: Sequence[int]) -> set[str]:
        """Tensors with an axis in one of `groups`."""
        wanted = set(groups)
        return {dim[0] for dim, entries in self.per_dim.items() if any(g in wanted for g, _ in entries)}


class CostModel(ABC):
    """A cost (`metric`) of the model as a function of the units each group keeps."""

    metric: str

    @abstractmethod
    def cost(self, kept: Kept) -> float:
        """The cost when every group keeps `kept[group]` units (unnamed groups: all)."""

    @property
    def full(self) -> float:
        """The cost of the unpruned model."""
        return self.cost({})

    def fraction(self, kept: Kept) -> float:
        """`cost(kept)` as a fraction of the unpruned cost (1.0 for a model that costs nothing)."""
        full = self.full
        return self.cost(kept) / full if full else 1.0


def narrowed(shapes: Mapping[str, list[int] | None], sizes: Mapping[Dim, int]) -> dict:
    """`shapes` with the axes in `sizes` replaced (the other entries are shared, not copied)."""
    changed: dict[str, list[int] | None] = {}
    for (tensor, axis), size in sizes.items():
        shape = changed.get(tensor) or shapes.get(tensor)
        if shape is None or axis >= len(shape):
            continue
        shape = list(shape)
        shape[axis] = size
        changed[tensor] = shape
    return {**shapes, **changed} if changed else dict(shapes)


class MacsCost(CostModel):
    """MACs from the op table's formulas at narrowed shapes (the counts `count_macs` gives of the
    pruned model, without pruning it)."""

    metric = "macs"

    def __init__(
        self,
        terms: MacTerms,
        shrink: AxisShrink,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        batch: int = 1,
    ) -> None:
        self.terms = terms
        self.shrink = shrink
        self.input_shapes = input_shapes
        """The input sizes MACs are counted at (the pruned model's count must use the same)."""
        self.batch = batch
        self._full = float(sum(terms.per_node().values()))

    @classmethod
    def build(
        cls,
        model: onnx.ModelProto,
        analysis: DependencyAnalysis,
        table: OpTable | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        batch: int = 1,
    ) -> MacsCost:
        """The MACs model of a normalized `model` (shapes inferred) and its analysis."""
        # a dynamic dim other than the batch is never guessed: attention costs grow with its square
        terms = mac_terms(
            model, input_shapes, batch=batch, dynamic_default=None, shapes_inferred=True, table=table
        )
        return cls(terms, AxisShrink.of(analysis), input_shapes, batch)

    @property
    def full(self) -> float:
        return self._full

    def cost(self, kept: Kept) -> float:
        sizes = self.shrink.sizes(kept)
        if not sizes:
            return self._full
        return float(sum(self.terms.per_node(narrowed(self.terms.shapes, sizes)).values()))


class ParamsCost(CostModel):
    """Elements of the weights `count_params` counts, at narrowed shapes."""

    metric = "params"

    def __init__(self, shapes: Mapping[str, list[int]], shrink: AxisShrink) -> None:
        self.shapes = shapes
        self.shrink = shrink
        self._full = float(sum(math.prod(s) for s in shapes.values()))

    @classmethod
    def build(cls, model: onnx.ModelProto, analysis: DependencyAnalysis) -> ParamsCost:
        shapes = {name: list(t.dims) for name, t in param_tensors(model).items()}
        return cls(shapes, AxisShrink.of(analysis))

    @property
    def full(self) -> float:
        return self._full

    def cost(self, kept: Kept) -> float:
        sizes = {dim: n for dim, n in self.shrink.sizes(kept).items() if dim[0] in self.shapes}
        if not sizes:
            return self._full
        return float(sum(math.prod(s) for s in narrowed(self.shapes, sizes).values()))
