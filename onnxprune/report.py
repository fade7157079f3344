"""What a pruning run did, in plain figures (`asdict` gives the JSON report).

>>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.report.params_after < result.report.params_before  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import onnx

from onnxprune.analysis import DependencyAnalysis
from onnxprune.metrics import count_params
from onnxprune.targets import UniformRatio

if TYPE_CHECKING:
    from onnxprune.session import PruneSession


@dataclass
class PruneReport:
    """What a pruning run did, in plain figures (``asdict`` gives the JSON report)."""

    source: str
    ratio: float | None
    criterion: str
    round_to: int
    groups_found: int
    groups_prunable: int
    groups_pruned: int
    groups_pinned: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    prunable_macs_fraction: float | None = None
    tensors_sliced: int = 0
    rewrites: int = 0
    barriers: list[str] = field(default_factory=list)
    passes: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each stage (onnxprune.stages), the report's own excluded."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, session: PruneSession) -> PruneReport:
        """The report of a session whose stages have run (`ratio` and `round_to` are the uniform
        target's, None and 1 for a replayed plan)."""
        analysis, results = session.analysis, session.pass_results
        target = session.options.target
        uniform = target if isinstance(target, UniformRatio) else None
        stats = {k: v for r in results for k, v in r.stats.items()}
        return cls(
            source=session.source.name,
            ratio=uniform.ratio if uniform else None,
            criterion=session.options.importance.name,
            round_to=uniform.round_to if uniform else 1,
            groups_found=len(analysis.groups),
            groups_prunable=len(analysis.prunable_groups),
            groups_pruned=len(session.decisions),
            groups_pinned=len(analysis.pinned_groups),
            params_before=session.params_before,
            params_after=count_params(session.output),
            macs_before=session.macs_before,
            macs_after=session.macs_after,
            tensors_sliced=stats.get("tensors_sliced", 0),
            rewrites=len(session.plan.rewrites),
            barriers=[str(b) for b in analysis.barriers],
            passes=[{"name": r.name, "modified": r.modified, **r.stats} for r in results],
            prunable_macs_fraction=session.prunable_macs_fraction,
            stage_seconds=dict(session.stage_seconds),
        )


def prunable_macs_fraction(
    model: onnx.ModelProto, analysis: DependencyAnalysis, per_node: dict[str, int] | None
) -> float | None:
    """Share of the model's MACs in nodes whose weights belong to a prunable group (None if unknown).
    `per_node` is `metrics.macs_by_node(model)`, None when it could not be counted."""
    if per_node is None:
        return None
    total = sum(per_node.values())
    if not total:
        return None
    prunable = {m.tensor for g in analysis.prunable_groups for m in g.weight_members}
    covered = sum(
        macs
        for node in model.graph.node
        if node.output
        and (macs := per_node.get(node.output[0]))
        and any(name in prunable for name in node.input[:2])
    )
    return covered / total
