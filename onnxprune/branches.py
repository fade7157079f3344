"""Residual branches: where ``y = x + f(x)`` and f is a region of the graph that only x enters
and only the Add leaves. Dropping such a branch makes y equal to x (depth pruning).

Found by graph analysis, not by matching op patterns. The nodes of the main graph form a
networkx DiGraph (an edge per tensor read, a virtual source before the graph inputs and a virtual
sink after the graph outputs and the nodes nobody reads). For an Add reading two computed tensors
``x`` (the skip) and ``b`` (the branch), with P the node computing b:

- the **region** of the branch is every node that P *post-dominates* (each of its paths to the
  sink passes through P: `nx.immediate_dominators` on the reversed graph). Such nodes feed
  nothing outside the region, so deleting them changes nothing else; P itself must feed the Add
  only (its other outputs unread).
- **single entry**: the region reads x itself (an identity shortcut; a projection shortcut,
  ``y = g(x) + f(x)`` as in a strided ResNet block, is not a residual branch of x), and every
  other tensor it reads from outside is computed without x (a side input: an attention mask,
  positions) or reaches it only through non-float tensors (a Shape of x). Side inputs stay.
- y has the shape of x (no broadcasting by the branch) and the Add has a name (the plan names it).

Every other Add is listed in `rejected` with the reason.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 2] x) => (float[1, 2] y) <float[2, 2] w = {1, 2, 3, 4}> {
...   h = Relu(x)
...   f = MatMul(h, w)
...   [add0] y = Add(h, f) }''')
>>> m = onnx.shape_inference.infer_shapes(m)  # shapes decide: the pipeline's normalized model has them
>>> [(b.add, b.branch, b.input, b.weights) for b in find_branches(m).branches]
[('add0', 'f', 'h', ('w',))]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import onnx

from onnxprune.graph import is_float, subgraph_reads, value_infos

SOURCE, SINK = -1, -2
"""The virtual nodes before the graph inputs and after the graph outputs."""

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
"""A branch computes at least one of these from a weight: a block, not an elementwise detail
(the ``x + 0.044715 x^3`` inside a tanh GELU is also ``x + f(x)``)."""


@dataclass(frozen=True)
class ResidualBranch:
    """One droppable residual branch: the Add node `add` computes `output` = `input` + `branch`;
    `nodes` (first output names, graph order) compute `branch` from `input` and leave with it;
    `weights` are the initializers only they read (they leave the file with them). `after` lists
    the op types reading `output` (a LayerNormalization there is a post-LN block: after the drop
    it computes LN(x))."""

    add: str
    branch: str
    input: str
    output: str
    nodes: tuple[str, ...]
    weights: tuple[str, ...]
    side_inputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    @property
    def post_norm(self) -> bool:
        """True when only a LayerNormalization reads the sum (post-LN: dropping leaves y = LN(x));
        in a pre-LN block the next block's LayerNormalization and its Add both read it."""
        return self.after == ("LayerNormalization",)

    def describe(self) -> str:
        """What dropping it removes, in words.

        >>> b = ResidualBranch("a", "f", "x", "y", ("h", "f"), ("w",), after=("LayerNormalization",))
        >>> b.describe()
        'a: y = x + f(x) -> y = x (2 nodes, 1 weights); post-LN: LN(x + f(x)) becomes LN(x)'
        """
        text = f"{self.add}: y = x + f(x) -> y = x ({len(self.nodes)} nodes, {len(self.weights)} weights)"
        if self.post_norm:
            text += "; post-LN: LN(x + f(x)) becomes LN(x)"
        return text


@dataclass(frozen=True)
class Rejected:
    """An Add that is not a droppable residual branch, and why."""

    add: str
    reason: str

    def __str__(self) -> str:
        return f"{self.add}: {self.reason}"


@dataclass(frozen=True)
class BranchAnalysis:
    """The residual branches of a graph, in graph order, and the Adds that are not branches."""

    branches: tuple[ResidualBranch, ...]
    rejected: tuple[Rejected, ...]

    def by_add(self) -> dict[str, ResidualBranch]:
        return {b.add: b for b in self.branches}


class _Graph:
    """The node graph of one ONNX graph, with the post-dominator tree over it."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.initializers = {t.name for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.info = value_infos(graph)
        self.producer: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = i
        self.reads: list[set[str]] = [
            {n for n in node.input if n} | subgraph_reads(node) for node in self.nodes
        ]
        self.readers: dict[str, list[int]] = {}
        for i, names in enumerate(self.reads):
            for name in names:
                self.readers.setdefault(name, []).append(i)
        self.dag = self._digraph()
        self.postdom = self._postdominator_children()

    def _digraph(self) -> nx.DiGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from([SOURCE, SINK, *range(len(self.nodes))])
        for i, names in enumerate(self.reads):
            sources = [self.producer[n] for n in names if n in self.producer]
            dag.add_edges_from((p, i) for p in sources)
            if not sources:
                dag.add_edge(SOURCE, i)
        for i, node in enumerate(self.nodes):
            if any(o in self.outputs for o in node.output) or not any(
                self.readers.get(o) for o in node.output if o
            ):
                dag.add_edge(i, SINK)
        return dag

    def _postdominator_children(self) -> dict[int, list[int]]:
        idom = nx.immediate_dominators(self.dag.reverse(copy=False), SINK)
        children: dict[int, list[int]] = {}
        for node, parent in idom.items():
            if node != parent:
                children.setdefault(parent, []).append(node)
        return children

    def postdominated(self, top: int) -> set[int]:
        """Every node whose paths to the sink all pass through `top` (`top` included)."""
        region, stack = set(), [top]
        while stack:
            n = stack.pop()
            region.add(n)
            stack.extend(self.postdom.get(n, ()))
        return region

    def computed_from(self, name: str) -> set[str]:
        """The tensors `name` flows into as data: through float tensors only (a Shape of it, an
        integer or boolean tensor, carries no value of it)."""
        found, stack = set(), [name]
        while stack:
            for reader in self.readers.get(stack.pop(), ()):
                for out in self.nodes[reader].output:
                    if out and out not in found and self.is_float(out) is not False:
                        found.add(out)
                        stack.append(out)
        return found

    def is_float(self, name: str) -> bool | None:
        info = self.info.get(name)
        if info is None or not info.type.HasField("tensor_type"):
            return None
        return is_float(info.type.tensor_type.elem_type)

    def dims(self, name: str) -> list | None:
        info = self.info.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        dims = info.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def find_branches(model: onnx.ModelProto) -> BranchAnalysis:
    """The droppable residual branches of `model`'s main graph (see the module docstring).

    Works on a model whose value_info is inferred (the pipeline's normalized model): shapes and
    element types decide the shape and side-input checks, and a missing one rejects the Add.
    """
    g = _Graph(model.graph)
    branches: list[ResidualBranch] = []
    rejected: list[Rejected] = []
    for i, node in enumerate(g.nodes):
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx"):
            continue
        label = node.name or node.output[0]
        found, reasons = None, []
        for skip, branch in _orientations(node):
            result = _branch(g, i, skip, branch)
            if isinstance(result, ResidualBranch):
                found = result
                break
            reasons.append(result)
        if found is not None and not node.name:
            rejected.append(Rejected(label, "the Add node has no name (a plan could not name it)"))
        elif found is not None:
            branches.append(found)
        else:
            rejected.append(Rejected(label, "; ".join(dict.fromkeys(reasons)) or "not two computed inputs"))
    return BranchAnalysis(tuple(branches), tuple(rejected))


def _orientations(add: onnx.NodeProto) -> Iterable[tuple[str, str]]:
    """(skip, branch) readings of an Add: the input computed later is tried as the branch first."""
    if len(add.input) != 2 or not all(add.input) or add.input[0] == add.input[1]:
        return []
    return [(add.input[0], add.input[1]), (add.input[1], add.input[0])]


def _branch(g: _Graph, add: int, skip: str, branch: str) -> ResidualBranch | str:
    """The residual branch `branch` of Add `add` over `skip`, or why it is not one."""
    if branch in g.initializers or branch not in g.producer:
        return f"{branch} is not computed by a node"
    if skip in g.initializers:
        return f"{skip} is a constant"
    node = g.nodes[add]
    output = node.output[0]
    skip_dims, out_dims = g.dims(skip), g.dims(output)
    if skip_dims is None or out_dims is None or skip_dims != out_dims or None in out_dims:
        return f"{skip} and the sum do not have the same known shape ({skip_dims} vs {out_dims})"
    top = g.producer[branch]
    if branch in g.outputs or g.readers.get(branch) != [add]:
        return f"{branch} is read by more than the Add"
    other = [o for o in g.nodes[top].output if o and o != branch and (g.readers.get(o) or o in g.outputs)]
    if other:
        return f"the node computing {branch} also computes {other[0]}, read elsewhere"
    region = g.postdominated(top) - {SOURCE, SINK}
    inside = {o for i in region for o in g.nodes[i].output if o}
    entries = {n for i in region for n in g.reads[i]} - inside - g.initializers
    if skip not in entries:
        return f"the branch does not read {skip} (a projection shortcut, not y = x + f(x))"
    from_skip = g.computed_from(skip)
    side = []
    for name in sorted(entries - {skip}):
        if name in from_skip:
            return f"the branch also reads {name}, a float tensor computed from {skip} (not single-entry)"
        side.append(name)
    if not any(g.nodes[i].op_type in WEIGHTED_OPS and g.reads[i] & g.initializers for i in region):
        return f"the branch to {branch} has no {'/'.join(WEIGHTED_OPS)} with weights (not a block)"
    order = sorted(region)
    weights = sorted(
        {n for i in region for n in g.reads[i] if n in g.initializers}
        - {n for n in g.initializers if any(r not in region for r in g.readers.get(n, ()))}
    )
    return ResidualBranch(
        add=node.name,
        branch=branch,
        input=skip,
        output=output,
        nodes=tuple(g.nodes[i].output[0] for i in order),
        weights=tuple(weights),
        side_inputs=tuple(side),
        after=tuple(g.nodes[r].op_type for r in g.readers.get(output, ())),
    )
