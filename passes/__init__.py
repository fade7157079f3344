"""Graph-rewriting passes, installed as `onnxprune.passes`."""

from onnxprune.passes.apply import RewriteNodes, SliceWeights
from onnxprune.passes.base import Pass, PassManager, PassResult, Repeat
from onnxprune.passes.cleanup import RemoveDeadNodes
from onnxprune.passes.normalize import (
    ConstantsToInitializers,
    DropInitializerInputs,
    FoldReshapeRoundTrips,
    FoldShapes,
    InlineFunctions,
    ResolveReshapeShapes,
    SimplifyReshapeTargets,
    UniqueNodeNames,
)
from onnxprune.passes.shapes import InferShapes

__all__ = [
    "ConstantsToInitializers",
    "DropInitializerInputs",
    "FoldReshapeRoundTrips",
    "FoldShapes",
    "InferShapes",
    "InlineFunctions",
    "Pass",
    "PassManager",
    "PassResult",
    "RemoveDeadNodes",
    "Repeat",
    "ResolveReshapeShapes",
    "RewriteNodes",
    "SimplifyReshapeTargets",
    "SliceWeights",
    "UniqueNodeNames",
]


def normalization_passes() -> list[Pass]:
    """The passes that make a model analyzable without changing what it computes."""
    return [
        InlineFunctions(),
        UniqueNodeNames(),
        ConstantsToInitializers(),
        DropInitializerInputs(),
        Repeat(
            [
                InferShapes(keep_resolved=True),
                FoldShapes(),
                SimplifyReshapeTargets(),
                ResolveReshapeShapes(),
                RemoveDeadNodes(),
            ]
        ),
        InferShapes(keep_resolved=True, symbolic=True),
        FoldReshapeRoundTrips(),
        RemoveDeadNodes(),
        ResolveReshapeShapes(),
        InferShapes(keep_resolved=True, symbolic=True),
    ]
