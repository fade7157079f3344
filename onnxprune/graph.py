"""Read-only questions about an ONNX graph, asked the same way by analysis, passes and metrics.

The lowest layer of the package (it imports only `onnx`): who produces and who reads a tensor,
the shape a value_info, graph input or initializer records for it, what an If/Loop/Scan body
reads from the enclosing scope, whether a node is in the default domain, whether a tensor type
is a float type.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[N, 4] x) => (float[N, 4] y) { t = Relu(x)  y = Sigmoid(t) }''')
>>> producers(m.graph.node)["t"].op_type, [n.op_type for n in consumers(m.graph.node)["t"]]
('Relu', ['Sigmoid'])
>>> shape_of(m.graph.input[0]), static_dims(m.graph.input[0])
(('N', 4), [None, 4])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx

DEFAULT_DOMAINS = ("", "ai.onnx")
"""The two spellings of the default ONNX operator domain."""

FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)
"""Element types whose tensors count as float weights (parameters)."""

Shape = tuple[int | str | None, ...]
"""Static sizes are ints; dynamic ones are their symbolic name (str) or None if unnamed."""

PLAIN_ATTRIBUTES = frozenset(
    {
        onnx.AttributeProto.FLOAT,
        onnx.AttributeProto.INT,
        onnx.AttributeProto.STRING,
        onnx.AttributeProto.FLOATS,
        onnx.AttributeProto.INTS,
        onnx.AttributeProto.STRINGS,
        onnx.AttributeProto.TYPE_PROTO,
        onnx.AttributeProto.TYPE_PROTOS,
    }
)
"""Attribute types that hold neither a tensor nor a graph."""


def is_default_domain(domain: str) -> bool:
    """True for the default ONNX domain, however it is spelled.

    >>> is_default_domain(""), is_default_domain("ai.onnx"), is_default_domain("com.microsoft")
    (True, True, False)
    """
    return domain in DEFAULT_DOMAINS


def norm_domain(domain: str) -> str:
    """The default domain as '', every other domain as it is.

    >>> norm_domain("ai.onnx"), norm_domain("com.microsoft")
    ('', 'com.microsoft')
    """
    return "" if domain in DEFAULT_DOMAINS else domain


def is_float(data_type: int) -> bool:
    """True for float32/16/64 and bfloat16 element types.

    >>> is_float(onnx.TensorProto.FLOAT16), is_float(onnx.TensorProto.INT64)
    (True, False)
    """
    return data_type in FLOAT_TYPES


def default_opset(model: onnx.ModelProto) -> int:
    """The opset version the model imports for the default domain (0 when it imports none).

    >>> default_opset(onnx.helper.make_model(onnx.GraphProto(), opset_imports=[
    ...     onnx.helper.make_opsetid("", 13)]))
    13
    """
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


def producers(nodes: Iterable[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    """Each tensor computed by one of `nodes`, mapped to the node that computes it."""
    return {name: node for node in nodes for name in node.output}


def consumers(nodes: Iterable[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    """Each tensor read by one of `nodes` (as a direct input), mapped to its readers in node
    order; a node reading a tensor twice is listed twice."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            if name:
                found.setdefault(name, []).append(node)
    return found


def reader_counts(graph: onnx.GraphProto) -> dict[str, int]:
    """How many times each tensor is read: once per node input slot, once more for each graph
    output that names it.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y, float[2] z) { y = Add(x, x)  z = Identity(y) }''')
    >>> reader_counts(m.graph)
    {'x': 2, 'y': 2, 'z': 1}
    """
    counts: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            counts[name] = counts.get(name, 0) + 1
    for out in graph.output:
        counts[out.name] = counts.get(out.name, 0) + 1
    return counts


def value_infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    """The declared type of every tensor the graph describes: inputs, value_info, outputs (a
    later declaration of a name wins, as in that order)."""
    return {vi.name: vi for vi in (*graph.input, *graph.value_info, *graph.output)}


def shape_of(info: onnx.ValueInfoProto | onnx.TensorProto) -> Shape | None:
    """Shape a value_info or an initializer records: ints where static, the symbol (or None)
    where dynamic; None when the rank is unknown or the value is not a tensor.

    >>> shape_of(onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["B", 3, None]))
    ('B', 3, None)
    """
    if isinstance(info, onnx.TensorProto):
        return tuple(info.dims)
    t = info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim
    )


def static_dims(info: onnx.ValueInfoProto) -> list[int | None] | None:
    """Dims of a tensor value (None where a dim is not a known number), or None if the rank is
    unknown.

    >>> static_dims(onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3]))
    [None, 3]
    """
    if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def attribute_graphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    """The subgraphs an attribute holds (an If branch, a Loop body); none for plain values."""
    if attr.type in PLAIN_ATTRIBUTES:
        return []
    return ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)


def node_subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """Every graph held by an attribute of `node` (not the graphs nested inside those)."""
    for attr in node.attribute:
        yield from attribute_graphs(attr)


def graph_defines(graph: onnx.GraphProto) -> set[str]:
    """Names a graph defines for itself: its inputs, initializers and node outputs (names its
    nested subgraphs define are local to those); a new tensor name must avoid them.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}> { y = Add(x, b) }''')
    >>> sorted(graph_defines(m.graph))
    ['b', 'x', 'y']
    """
    names = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    names |= {s.values.name for s in graph.sparse_initializer}
    names |= {o for n in graph.node for o in n.output if o}
    return names


def outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names `graph` reads from the scopes around it: what its nodes read, what its outputs
    name directly and what its nodes' own subgraphs read from outside them, minus every name
    `graph` defines itself.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (bool c, float[2] x, float[2] w) => (float[2] y) {
    ...   y = If(c) <then_branch = t () => (float[2] a) { a = Add(x, w) },
    ...              else_branch = e () => (float[2] x2) { x2 = Identity(x) }> }''')
    >>> sorted(subgraph_reads(m.graph.node[0]))
    ['w', 'x']
    """
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(i for i in node.input if i)
        if node.attribute:
            names |= subgraph_reads(node)
    return names - graph_defines(graph)


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names the If/Loop/Scan bodies of `node` read from the scope `node` is in (see
    `outer_reads`); empty for a node without subgraphs."""
    names: set[str] = set()
    for attr in node.attribute:  # (asked for every node by cleanup: plain attributes skip fast)
        if attr.type not in PLAIN_ATTRIBUTES:
            for graph in attribute_graphs(attr):
                names |= outer_reads(graph)
    return names


def outputs_and_subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names no pass may rename, copy away or drop: the graph outputs and what the subgraphs of
    its nodes read from it."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        if node.attribute:
            names |= subgraph_reads(node)
    return names


def fresh_name(base: str, taken) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first not in `taken`.

    >>> fresh_name("w", {"w", "w_1"})
    'w_2'
    """
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def node_label(node: onnx.NodeProto) -> str:
    """A node's name, or its first output when it has none (how plans and reports name nodes).

    >>> node_label(onnx.helper.make_node("Relu", ["x"], ["y"]))
    'y'
    """
    return node.name or node.output[0]


QUANTIZED_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (0, 2),
    "QuantizeLinear": (2,),
    "ConvInteger": (1, 2, 3),
    "MatMulInteger": (1, 2, 3),
    "QLinearConv": (2, 3, 5, 7, 8),
    "QLinearMatMul": (2, 3, 5, 7),
    "QGemm": (2, 3, 5, 6, 8),  # com.microsoft (ONNX Runtime's QOperator format)
}
"""Inputs of the quantization ops (default domain; QGemm of com.microsoft) that hold integer
values a prune may slice (quantized weights, zero points, int32 biases), by op type."""

QUANTIZATION_DOMAINS = ("", "ai.onnx", "com.microsoft")
"""Domains whose ops `QUANTIZED_WEIGHT_INPUTS` and `ZERO_POINT_OF` describe."""

ZERO_POINT_OF: dict[str, dict[int, int]] = {
    "DequantizeLinear": {0: 2},
    "ConvInteger": {1: 3},
    "MatMulInteger": {1: 3},
    "QLinearConv": {3: 5},
    "QLinearMatMul": {3: 5},
    "QGemm": {3: 5},
}
"""For each quantization op, the input holding the zero point of each quantized input."""


def quantized_weights(graph: onnx.GraphProto) -> set[str]:
    """Names of the integer initializers that a quantization op reads as quantized values
    (weights, zero points, int32 biases): they are sliced with the channels like float weights.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 19]>
    ... g (float[2, 3] x) => (float[2, 4] y) <int8[3, 4] q = {0,0,0,0,0,0,0,0,0,0,0,0}, float s = {1.0}>
    ... { w = DequantizeLinear(q, s)  y = MatMul(x, w) }''')
    >>> quantized_weights(m.graph)
    {'q'}
    """
    ints = {t.name for t in graph.initializer if t.data_type not in FLOAT_TYPES}
    found: set[str] = set()
    for node in graph.node:
        if node.domain in QUANTIZATION_DOMAINS and node.op_type in QUANTIZED_WEIGHT_INPUTS:
            for index in QUANTIZED_WEIGHT_INPUTS[node.op_type]:
                if index < len(node.input) and node.input[index] in ints:
                    found.add(node.input[index])
    return found
