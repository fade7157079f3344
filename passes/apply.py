"""Structured removal: slice weights along kept positions, then rewrite the nodes that encode
channel counts. Both mutate the model in place."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.analysis import Dim, RuleContext
from onnxprune.passes.base import Pass, PassResult
from onnxprune.passes.rewriters import NodeEditor, lookup_rewriter
from onnxprune.plan import Rewrite
from onnxprune.weights import tensor_array


class SliceWeights(Pass):
    """Replace every weight that loses positions by its slice (same name, same dtype)."""

    def __init__(self, keeps: dict[Dim, np.ndarray]) -> None:
        self.keeps = keeps

    def call(self, model: onnx.ModelProto) -> PassResult:
        by_tensor: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (tensor, axis), keep in self.keeps.items():
            by_tensor.setdefault(tensor, []).append((axis, keep))
        sliced = removed = 0
        for init in model.graph.initializer:
            cuts = by_tensor.get(init.name)
            if not cuts:
                continue
            array = tensor_array(init)
            before = array.size
            for axis, keep in sorted(cuts, key=lambda c: c[0]):
                array = np.take(array, keep, axis=axis)
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), init.name))
            sliced += 1
            removed += before - array.size
        return PassResult(self.name, bool(sliced), {"tensors_sliced": sliced, "weights_removed": removed})


class RewriteNodes(Pass):
    """Fix attributes and shape constants (Conv group, Split, Slice, Reshape, Resize)."""

    def __init__(self, keeps: dict[Dim, np.ndarray], ctx: RuleContext) -> None:
        self.keeps = keeps
        self.ctx = ctx
        self.rewrites: list[Rewrite] = []

    def call(self, model: onnx.ModelProto) -> PassResult:
        edit = NodeEditor(model, self.ctx, self.keeps)
        for node in model.graph.node:
            fn = lookup_rewriter(node.op_type) if node.domain in ("", "ai.onnx") else None
            if fn is not None:
                self.rewrites.extend(fn(node, edit))
        return PassResult(self.name, bool(self.rewrites), {"nodes_rewritten": len(self.rewrites)})
