"""Cleanup: remove what no longer contributes to a graph output."""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from onnxprune.graph import subgraph_reads
from onnxprune.passes.base import Pass, PassResult


class RemoveDeadNodes(Pass):
    """Drop nodes whose outputs nothing reads, and initializers nothing reads except those in
    `keep` (weights the input model also declares as graph inputs: part of its interface)."""

    def __init__(self, keep: Iterable[str] = ()) -> None:
        self.keep = frozenset(keep)

    def call(self, model: onnx.ModelProto) -> PassResult:
        graph = model.graph
        live = {o.name for o in graph.output}
        kept = []
        for node in reversed(graph.node):
            if any(o in live for o in node.output):
                kept.append(node)
                live.update(i for i in node.input if i)
                if node.attribute:
                    live.update(subgraph_reads(node))
        kept.reverse()
        removed_nodes = len(graph.node) - len(kept)
        dead = [i for i, t in enumerate(graph.initializer) if t.name not in live and t.name not in self.keep]
        removed_inits = len(dead)
        if removed_nodes:
            del graph.node[:]
            graph.node.extend(kept)
        for i in reversed(dead):  # in place: rebuilding the list would copy every kept weight
            del graph.initializer[i]
        produced = {o for node in kept for o in node.output}  # an unread output keeps its shape
        vi = [v for v in graph.value_info if v.name in live or v.name in produced]
        if len(vi) < len(graph.value_info):
            del graph.value_info[:]
            graph.value_info.extend(vi)
        return PassResult(
            self.name,
            bool(removed_nodes or removed_inits),
            {"nodes_removed": removed_nodes, "initializers_removed": removed_inits},
        )
