"""Graph-rewriting passes, installed as `onnxprune.passes`."""

from collections.abc import Iterable

from onnxprune.optable import OpTable
from onnxprune.passes.apply import RewriteNodes, ShrinkValueInfo, SliceWeights
from onnxprune.passes.base import AnalysisCache, Pass, PassManager, PassResult, Repeat
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
    "AnalysisCache",
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
    memo: ShapeMemo | None = None,
    keep: Iterable[str] = (),
    table: OpTable | None = None,
    analyses: AnalysisCache | None = None,
) -> list[Pass]:
    """The passes that make a model analyzable without changing what it computes. Their shape
    inferences share `memo` (a fresh one if not given); initializers in `keep` stay even when
    nothing reads them; `table` (default: `default_op_table()`) says which inputs of an op
    are read per channel; the passes that read the graph through a rule context share
    `analyses` (run them with a `PassManager` holding the same cache)."""
    memo = memo if memo is not None else ShapeMemo()
    analyses = analyses if analyses is not None else AnalysisCache()
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
                SimplifyReshapeTargets(analyses),
                ResolveReshapeShapes(analyses),
                FoldReshapeRoundTrips(analyses),
                RemoveDeadNodes(keep),
            ],
            analyses=analyses,
        ),
    ]
