"""Depth pruning's rewiring: each dropped residual branch's sum ``y = x + f(x)`` becomes x, and
the branch's nodes and the weights only they read leave the graph (through onnx-graphsurgeon,
`onnxprune.surgeon.rewire`, which keeps node metadata and value_info)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import onnx
import onnx_graphsurgeon as gs

from onnxprune.branches import ResidualBranch
from onnxprune.errors import ModelError
from onnxprune.passes.base import Pass, PassResult
from onnxprune.surgeon import rewire


class DropBranches(Pass):
    """Drop `branches` (found by `onnxprune.branches.find_branches` on this graph): readers of
    each Add's sum read its skip input instead (an Identity stays where the sum is a graph
    output), and the branch's nodes and exclusive weights go. Initializers in `keep` stay.

    A branch whose Add is not in the graph (any more) is a ModelError naming it.
    """

    def __init__(self, branches: Sequence[ResidualBranch], keep: Iterable[str] = ()) -> None:
        self.branches = tuple(branches)
        self.keep = frozenset(keep)

    def call(self, model: onnx.ModelProto) -> PassResult:
        if not self.branches:
            return PassResult(self.name, False, {"branches_dropped": 0})
        nodes_before, weights_before = len(model.graph.node), len(model.graph.initializer)
        outputs = {o.name for o in model.graph.output}
        rewire(model, lambda graph: self._bypass(graph, outputs), keep=self.keep)
        return PassResult(
            self.name,
            True,
            {
                "branches_dropped": len(self.branches),
                "nodes_removed": nodes_before - len(model.graph.node),
                "initializers_removed": weights_before - len(model.graph.initializer),
            },
        )

    def _bypass(self, graph: gs.Graph, outputs: set[str]) -> None:
        adds = {node.outputs[0].name: node for node in graph.nodes if node.outputs}
        for branch in self.branches:
            add = adds.get(branch.output)
            names = [t.name for t in add.inputs] if add is not None else []
            # the skip input may be the sum of a branch dropped before: then it reads that one's skip
            if add is None or add.op != "Add" or len(names) != 2 or branch.branch not in names:
                raise ModelError(f"residual branch {branch.add} (Add) is not in the graph as it was found")
            skip = add.inputs[1 - names.index(branch.branch)]
            total = add.outputs[0]
            if total.name in outputs:
                add.op, add.inputs = "Identity", [skip]
                continue
            for reader in list(total.outputs):
                for i, tensor in enumerate(list(reader.inputs)):
                    if tensor is total:
                        reader.inputs[i] = skip
            add.outputs.clear()
            add.inputs.clear()
