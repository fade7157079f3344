"""What a pruning run did, in plain figures (`asdict` gives the JSON report).

>>> result = prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.report.params_after < result.report.params_before  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from onnxprune.analysis import DependencyAnalysis
from onnxprune.budget import Allocation
from onnxprune.costs import CostModel, MacsCost
from onnxprune.metrics import macs_by_node
from onnxprune.optable import OpTable


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
    calibration: dict[str, Any] | None = None
    """With calibration data: its source, feeds, samples, tensors measured and CPU seconds."""
    compensation: dict[str, Any] | None = None
    """With compensation: its method, consumers refitted and skipped (why), tensors updated, time."""
    fidelity: dict[str, Any] | None = None
    """With held-out samples: the output model against the input (`FidelityReport.to_json`)."""
    structural_fidelity: dict[str, Any] | None = None
    """With compensation and held-out samples: the structural prune's, before compensation."""
    depth: dict[str, Any] | None = None
    """With depth pruning: the residual branches scored and dropped (`DepthReport.to_json`)."""
    budget: dict[str, Any] | None = None
    """With a budget target: the metric, allocation, asked / predicted / achieved kept fractions,
    the lowest reachable, and why the budget was missed when it was (`Allocation.to_json`); with
    a speedup target also each measured attempt."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know about the result (groups rounding left whole, ...)."""
    sparsity: dict[str, Any] | None = None
    """With weight sparsity: per-layer and overall sparsity, file sizes raw and gzip, the note."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def budget_summary(
    allocation: Allocation | None,
    costs: CostModel | None,
    output: onnx.ModelProto,
    report: PruneReport,
    table: OpTable,
) -> dict[str, Any] | None:
    """A budget's figures (`Allocation.to_json`) and the achieved kept fraction of its metric,
    counted on `output`: MACs at the shapes the cost model counted at, parameters as
    `count_params` (latency is measured by the caller, `prune(target_speedup=...)`)."""
    if allocation is None:
        return None
    summary = allocation.to_json()
    if isinstance(costs, MacsCost) and costs.full:
        after = macs_by_node(output, costs.input_shapes, batch=costs.batch, table=table)
        summary["achieved"] = round(sum(after.values()) / costs.full, 6)
    elif summary["metric"] == "params" and report.params_before:
        summary["achieved"] = round(report.params_after / report.params_before, 6)
    return summary


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
    prunable |= {  # a QDQ weight: the value a DequantizeLinear makes of a prunable quantized one
        n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in prunable
    }
    # a recurrent layer's W and R may be rebuilt from the parameters at run time (dynamo)
    rebuilt = {m.tensor for g in analysis.prunable_groups for m in g.members}
    covered = sum(
        macs
        for node in model.graph.node
        if node.output
        and (macs := per_node.get(node.output[0]))
        and (
            any(name in prunable for name in node.input[: 4 if node.op_type.startswith("QLinear") else 2])
            or (node.op_type in ("LSTM", "GRU", "RNN") and any(name in rebuilt for name in node.input[1:3]))
        )
    )
    return covered / total
