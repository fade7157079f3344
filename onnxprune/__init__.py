"""onnxprune: structured channel pruning of ONNX graphs.

>>> import onnxprune
>>> result = onnxprune.prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.save("pruned.onnx")  # doctest: +SKIP
"""

from onnxprune.analysis import Barrier, DependencyAnalysis, Group
from onnxprune.errors import ModelError, OnnxPruneError, PlanError, UsageError
from onnxprune.pipeline import PruneReport, PruneResult, analyze, prune
from onnxprune.plan import Plan, TensorSlice
from onnxprune.validate import ParityReport, ValidationReport, validate

__version__ = "0.1.0"

__all__ = [
    "Barrier",
    "DependencyAnalysis",
    "Group",
    "ModelError",
    "OnnxPruneError",
    "ParityReport",
    "Plan",
    "PlanError",
    "PruneReport",
    "PruneResult",
    "TensorSlice",
    "UsageError",
    "ValidationReport",
    "__version__",
    "analyze",
    "prune",
    "validate",
]
