"""onnxprune: structured channel pruning of ONNX graphs.

>>> import onnxprune
>>> result = onnxprune.prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.save("pruned.onnx")  # doctest: +SKIP
"""

from onnxprune.allocation import allocate_by_sensitivity
from onnxprune.analysis import Barrier, DependencyAnalysis, Group
from onnxprune.errors import InternalError, ModelError, OnnxPruneError, PlanError, UsageError
from onnxprune.group_sensitivity import SensitivityReport, sensitivity
from onnxprune.pipeline import PruneReport, PruneResult, analyze, prune
from onnxprune.plan import Plan, TensorSlice, TensorUpdate
from onnxprune.targets import ReplayPlan, Target, UniformRatio
from onnxprune.validate import ParityReport, ValidationReport, validate

__version__ = "0.1.0"

__all__ = [
    "Barrier",
    "DependencyAnalysis",
    "Group",
    "InternalError",
    "ModelError",
    "OnnxPruneError",
    "ParityReport",
    "Plan",
    "PlanError",
    "PruneReport",
    "PruneResult",
    "ReplayPlan",
    "SensitivityReport",
    "Target",
    "TensorSlice",
    "TensorUpdate",
    "UniformRatio",
    "UsageError",
    "ValidationReport",
    "__version__",
    "allocate_by_sensitivity",
    "analyze",
    "prune",
    "sensitivity",
    "validate",
]
