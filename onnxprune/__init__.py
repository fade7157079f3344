"""onnxprune: structured channel pruning of ONNX graphs.

>>> import onnxprune
>>> result = onnxprune.prune("models/default.onnx", ratio=0.4)  # doctest: +SKIP
>>> result.save("pruned.onnx")  # doctest: +SKIP
"""

from onnxprune.analysis import Barrier, DependencyAnalysis, Group
from onnxprune.errors import ModelError, OnnxPruneError, PlanError, UsageError
from onnxprune.pipeline import PruneReport, PruneResult, analyze, prune
from onnxprune.plan import Plan, TensorSlice

__version__ = "0.1.0"

__all__ = [
    "Barrier",
    "DependencyAnalysis",
    "Group",
    "ModelError",
    "OnnxPruneError",
    "Plan",
    "PlanError",
    "PruneReport",
    "PruneResult",
    "TensorSlice",
    "UsageError",
    "__version__",
    "analyze",
    "prune",
    "validate",
]


def validate(original, pruned, plan, **kwargs):
    """Check a pruned model against its original and plan; see `onnxprune.validate.validate`."""
    from onnxprune.validate import validate as _validate

    return _validate(original, pruned, plan, **kwargs)
