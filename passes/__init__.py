"""Graph-rewriting passes, installed as `onnxprune.passes`."""

from collections.abc import Iterable

from onnxprune.optable import OpTable
from onnxprune.passes.apply import RewriteNodes, ShrinkValueInfo, SliceWeights
from onnxprune.passes.base import Pass, PassManager, PassResult, Repeat
from onnxprune.passes.cleanup import RemoveDeadNodes
from onnxprune.passes.normalize import (
    BypassConstantIdentities,
    ConstantsToInitializers,
    DropInitializerInputs,
    FoldReshapeRoundTrips,
    FoldShapes,
    InlineFunctions,
    ResolveReshapeShapes,
    SimplifyReshapeTargets,
    UniqueNodeNames,
    UnshareVectorConstants,
)
from onnxprune.passes.shapes import InferShapes, ShapeMemo

__all__ = [
    "BypassConstantIdentities",
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
    "ShapeMemo",
    "ShrinkValueInfo",
    "SimplifyReshapeTargets",
    "SliceWeights",
    "UniqueNodeNames",
    "UnshareVectorConstants",
]


def normalization_passes(
    memo: ShapeMemo | None = None, keep: Iterable[str] = (), table: OpTable | None = None
) -> list[Pass]:
    """The passes that make a model analyzable without changing what it computes. Their shape
    inferences share `memo` (a fresh one if not given); initializers in `keep` stay even when
    nothing reads them; `table` (default: `default_op_table()`) says which inputs of an op
    are read per channel."""
    memo = memo if memo is not None else ShapeMemo()
    return [
        InlineFunctions(),
        UniqueNodeNames(),
        ConstantsToInitializers(),
        DropInitializerInputs(),
        BypassConstantIdentities(),
        UnshareVectorConstants(keep, table),
        Repeat(
            [
                InferShapes(keep_resolved=True, symbolic=True, memo=memo),
                FoldShapes(),
                SimplifyReshapeTargets(),
                ResolveReshapeShapes(),
                FoldReshapeRoundTrips(),
                RemoveDeadNodes(keep),
            ]
        ),
    ]
