"""Graph-rewriting passes, installed as `onnxprune.passes`."""

from onnxprune.passes.apply import RewriteNodes, SliceWeights
from onnxprune.passes.base import Pass, PassManager, PassResult
from onnxprune.passes.cleanup import RemoveDeadNodes
from onnxprune.passes.normalize import (
    ConstantsToInitializers,
    DropInitializerInputs,
    FoldShapes,
    InferShapes,
    InlineFunctions,
)

__all__ = [
    "ConstantsToInitializers",
    "DropInitializerInputs",
    "FoldShapes",
    "InferShapes",
    "InlineFunctions",
    "Pass",
    "PassManager",
    "PassResult",
    "RemoveDeadNodes",
    "RewriteNodes",
    "SliceWeights",
]


def normalization_passes() -> list[Pass]:
    """The passes that make a model analyzable without changing what it computes."""
    return [
        InlineFunctions(),
        ConstantsToInitializers(),
        DropInitializerInputs(),
        InferShapes(),
        FoldShapes(),
        RemoveDeadNodes(),
        InferShapes(),
        FoldShapes(),
        RemoveDeadNodes(),
        InferShapes(),
    ]
