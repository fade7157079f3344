"""The pruning session: one object that carries a run from load to the result.

Every stage (`onnxprune.stages`) reads and writes fields of the session, and declares which;
`run_stages` checks those declarations as it goes. The session owns the working model (the
input's copy, normalized and then pruned in place), the weight store, the analysis, the scores,
the decisions, the plan and the figures the report is made of. Cached analyses (the rule context
the dependency analysis built) are reused until a pass changes the graph (`graph_changed`).

>>> session = PruneSession.open("models/default.onnx", PruneOptions(UniformRatio(0.4)))  # doctest: +SKIP
>>> run_stages(session, default_stages())  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnxprune.analysis import DependencyAnalysis, Dim
from onnxprune.budget import Allocation
from onnxprune.calibration import ActivationStats, CalibrationData
from onnxprune.compensate import CompensationReport
from onnxprune.costs import CostModel
from onnxprune.fidelity import FidelityReport
from onnxprune.importance import Importance, UnitScores, default_importances
from onnxprune.io import LoadedModel, ModelLike, read_model
from onnxprune.metrics import count_params
from onnxprune.optable import OpTable, default_op_table
from onnxprune.passes import AnalysisCache, PassManager, PassResult
from onnxprune.plan import Plan
from onnxprune.sparsity import SparsityOptions, SparsityReport
from onnxprune.targets import Decisions, Target
from onnxprune.weights import weight_tensors
from onnxprune.weightstore import WeightStore

if TYPE_CHECKING:
    from onnxprune.depth import DepthReport
    from onnxprune.report import PruneReport


@dataclass(frozen=True)
class PruneOptions:
    """What the user asked for: the target (None to analyze only), the importance criterion,
    the exclusions; and the op table every stage reads op rules, rewriters and MAC formulas from."""

    target: Target | None
    importance: Importance = field(default_factory=lambda: default_importances().get("l1"))
    exclude: str | None = None
    op_table: OpTable = field(default_factory=default_op_table)
    calibration: CalibrationData | None = None
    """Samples to take activation statistics on and to measure fidelity on (`--calib`)."""
    input_shapes: dict[str, list[int]] | None = None
    """Sizes of dynamic input dims for costs: MAC counts and latency measurements (`--input-shape`)."""
    batch: int = 1
    threads: int | None = None
    """ONNX Runtime intra-op threads for latency measurements (None: 2)."""
    cost_model: CostModel | None = field(default=None, compare=False)
    """A cost model measured before on this same model (a budget target reuses it)."""
    sparsity: SparsityOptions | None = None
    """Weight sparsity after the structural prune (`--sparsity`, `--nm`)."""


@dataclass(eq=False)
class PruneSession:
    """The state of one pruning run. Fields are None until the stage that writes them ran."""

    input: ModelLike
    """The model as the caller gave it (never modified)."""
    source: LoadedModel
    options: PruneOptions
    model: onnx.ModelProto
    """The working model: the input's own copy, normalized and pruned in place."""
    weights: WeightStore
    declared_inputs: list[str]
    """Graph input names of the input model, in order (weights among them are overridable)."""
    input_weights: frozenset[str]
    """Weight names of the input model: the only tensors a plan names."""
    params_before: int
    activations: ActivationStats | None = None
    """Calibration statistics of the activations prunable weights multiply, when data was given."""
    normalized: bool = False
    analysis: DependencyAnalysis | None = None
    analyses: AnalysisCache = field(default_factory=AnalysisCache)
    """Read-only analyses of the working model (its rule context), shared by the passes and the
    stages, dropped when a pass changes the graph."""
    costs: CostModel | None = None
    """The cost model of a budget target's metric (`onnxprune.costs`, `onnxprune.latency`)."""
    scores: dict[int, UnitScores] | None = None
    allocation: Allocation | None = None
    """What a budget target chose and how close it came to the budget."""
    decisions: Decisions | None = None
    keeps: dict[Dim, np.ndarray] | None = None
    plan: Plan | None = None
    macs_before: int | None = None
    prunable_macs_fraction: float | None = None
    output: onnx.ModelProto | None = None
    macs_after: int | None = None
    reference: onnx.ModelProto | None = None
    """With compensation: a copy of the normalized model before pruning."""
    structural: onnx.ModelProto | None = None
    """With compensation: the output as sliced, before any weight changed (validation's parity)."""
    compensation: CompensationReport | None = None
    fidelity: FidelityReport | None = None
    structural_fidelity: FidelityReport | None = None
    """With compensation and held-out data: the structural prune's fidelity, before compensation."""
    sparsity: SparsityReport | None = None
    """With weight sparsity: what it zeroed, per layer."""
    report: PruneReport | None = None
    pass_results: list[PassResult] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each stage run so far (`load` is the time `open` took)."""
    node_metadata: dict[str, onnx.NodeProto] = field(default_factory=dict)
    depth: DepthReport | None = None
    """With depth pruning (`onnxprune.depth.DropBlocks`): the branches scored and dropped."""

    @classmethod
    def open(cls, model: ModelLike, options: PruneOptions) -> PruneSession:
        """Load `model` (a path, bytes or a ModelProto, never modified) into a new session.

        Large external weights stay on disk (read lazily, one tensor at a time); the loaded
        proto is the session's own, so it is normalized and pruned in place, never copied again.
        """
        start = time.process_time()
        loaded = read_model(model, lazy=True)
        work = loaded.model
        session = cls(
            input=model,
            source=loaded,
            options=options,
            model=work,
            weights=WeightStore(work, loaded.base_dir),
            declared_inputs=[vi.name for vi in work.graph.input],
            input_weights=frozenset(weight_tensors(work)),
            params_before=count_params(work),
        )
        session.stage_seconds["load"] = time.process_time() - start
        return session

    @property
    def weight_inputs(self) -> set[str]:
        """Weights the input model also declared as graph inputs: they stay, read or not."""
        return set(self.declared_inputs) & self.input_weights

    def run_passes(self, passes: list) -> list[PassResult]:
        """Run graph passes on the working model; a pass that changed it drops cached analyses."""
        results = PassManager(passes, analyses=self.analyses).run(self.model)
        self.pass_results += results
        if any(r.modified for r in results):
            self.graph_changed()
        return results

    def graph_changed(self) -> None:
        """Forget what was read off the graph before a pass changed it."""
        self.analyses.invalidate()
        self.weights.graph_changed()
