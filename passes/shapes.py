"""Shape inference as a pass (see `onnxprune.shapeinfer`).

>>> memo = ShapeMemo()  # doctest: +SKIP
>>> PassManager([InferShapes(memo=memo), FoldShapes(), InferShapes(memo=memo)]).run(model)  # doctest: +SKIP
"""

from __future__ import annotations

import onnx

from onnxprune.passes.base import Pass, PassResult
from onnxprune.shapeinfer import ShapeMemo, infer_value_info

__all__ = ["InferShapes", "ShapeMemo"]


class InferShapes(Pass):
    """Re-run ONNX shape inference (with data propagation) from scratch.

    Inference runs on a skeleton of the model whose large weights are declared as typed
    inputs instead of carrying their data, so it costs the same for a 500 MB model as for
    a 5 MB one. With `keep_resolved`, the output shapes of Reshape and Expand nodes already in
    value_info (see ResolveReshapeShapes) guide inference downstream; with `symbolic`, dims
    ONNX's inference leaves open are filled from ONNX Runtime's symbolic inference.
    """

    idempotent = True

    def __init__(
        self, keep_resolved: bool = False, symbolic: bool = False, memo: ShapeMemo | None = None
    ) -> None:
        self.keep_resolved = keep_resolved
        self.symbolic = symbolic
        self.memo = memo if memo is not None else ShapeMemo(capacity=1)

    def call(self, model: onnx.ModelProto) -> PassResult:
        modified = infer_value_info(
            model, self.memo, keep_resolved=self.keep_resolved, symbolic=self.symbolic
        )
        return PassResult(self.name, modified, {"value_info": len(model.graph.value_info)})
