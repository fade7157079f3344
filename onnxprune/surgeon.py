"""Edit a graph's wiring with onnx-graphsurgeon, keeping what its round trip loses.

An onnx-graphsurgeon import/export drops every node's `metadata_props` (the dynamo exporter's
stack traces and module paths) and the value_info of tensors whose type it did not track
(`benchmarks/graphsurgeon_roundtrip.md`). `rewire` runs one edit through graphsurgeon and puts
both back on the nodes and tensors that survive, keyed by a node's first output name (what a
node computes is what identifies it across the round trip). Weights never enter graphsurgeon:
the initializers are held out of the import and the ones still read come back as they were
(external data, if any, untouched and unread); model-level fields (IR version, opsets,
producer, metadata_props, functions) are the input's, since only the graph is replaced.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[2] x) => (float[2] y) <float[2] w = {1, 2}> { h = Mul(x, w)
...   y = Add(x, h) }''')
>>> _ = m.graph.node[1].metadata_props.add(key="pkg.torch.onnx.stack_trace", value="block.py:1")
>>> def bypass(graph):  # y = Identity(x): the Mul and its weight go
...     add = graph.nodes[1]
...     add.op, add.inputs = "Identity", [add.inputs[0]]
>>> rewire(m, bypass)
>>> [n.op_type for n in m.graph.node], len(m.graph.initializer), m.graph.node[0].metadata_props[0].value
(['Identity'], 0, 'block.py:1')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import onnx
import onnx_graphsurgeon as gs

from onnxprune.graph import outputs_and_subgraph_reads


def rewire(model: onnx.ModelProto, edit: Callable[[gs.Graph], None], keep: Iterable[str] = ()) -> None:
    """Apply `edit` to `model`'s main graph as an onnx-graphsurgeon Graph, in place.

    After `edit`, the graph is cleaned up (nodes and initializers nothing reads any more go),
    in the node order it had (an edit that adds nodes places them in order). Every surviving
    node gets its metadata_props back, every surviving tensor (or kept weight) its value_info;
    graph inputs and outputs keep their declarations; the initializers still read (or named in
    `keep`) stay as they were. `edit` must keep each node's first output name (a node it
    creates has none to restore).
    """
    graph = model.graph
    metadata = {n.output[0]: list(n.metadata_props) for n in graph.node if n.output and n.metadata_props}
    value_info = {vi.name: vi for vi in graph.value_info}
    declared = {vi.name: vi for vi in (*graph.input, *graph.output)}
    weights = list(graph.initializer)
    del graph.initializer[:]  # graphsurgeon sees weights as tensors without producers
    try:
        work = gs.import_onnx(_graph_only(model))
    finally:
        graph.initializer.extend(weights)
    edit(work)
    work.cleanup(remove_unused_graph_inputs=False)
    exported = gs.export_onnx(work, do_type_check=False).graph
    del graph.node[:]
    graph.node.extend(exported.node)
    for node in graph.node:
        if node.output and node.output[0] in metadata and not node.metadata_props:
            node.metadata_props.extend(metadata[node.output[0]])
    read = {name for node in graph.node for name in node.input} | outputs_and_subgraph_reads(graph)
    read |= {i.name for i in graph.input} | set(keep)
    kept = [t for t in weights if t.name in read]
    if len(kept) != len(weights):
        del graph.initializer[:]
        graph.initializer.extend(kept)
    computed = {name for node in graph.node for name in node.output} | {t.name for t in kept}
    del graph.value_info[:]
    graph.value_info.extend(vi for name, vi in value_info.items() if name in computed)
    for field in (graph.input, graph.output):
        restored = [declared.get(vi.name, vi) for vi in field]
        del field[:]
        field.extend(restored)


def _graph_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """A model with `model`'s graph (its weights held out by the caller) and opsets: what
    graphsurgeon imports."""
    shell = onnx.ModelProto()
    shell.ir_version = model.ir_version
    shell.opset_import.extend(model.opset_import)
    shell.graph.CopyFrom(model.graph)
    return shell


__all__ = ["rewire"]
