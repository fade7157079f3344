"""Normalization: make the graph analyzable without changing what it computes."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.rules.layout import reshape_output
from onnxprune.folding import constants_to_initializers, fold_shapes
from onnxprune.graph import (
    FLOAT_TYPES,
    default_opset,
    fresh_name,
    graph_defines,
    is_default_domain,
    outputs_and_subgraph_reads,
)
from onnxprune.optable import OpTable, default_op_table
from onnxprune.passes.base import AnalysisCache, Pass, PassResult


class InlineFunctions(Pass):
    """Inline model-local functions so every op is visible to the analyzer."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        if not model.functions:
            return PassResult(self.name, False)
        count = len(model.functions)
        inlined = onnx.inliner.inline_local_functions(model)
        model.CopyFrom(inlined)
        return PassResult(self.name, True, {"functions_inlined": count})


class ConstantsToInitializers(Pass):
    """Constant nodes become initializers of the same name (weights in Constant nodes included)."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        moved = constants_to_initializers(model)
        return PassResult(self.name, bool(moved), {"constants_moved": moved})


class UniqueNodeNames(Pass):
    """Give repeated node names a numeric suffix (ONNX Runtime refuses models with duplicates);
    empty names stay empty. The first node of each name keeps it."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        seen: set[str] = {n.name for n in model.graph.node if n.name}
        used: set[str] = set()
        renamed = 0
        for node in model.graph.node:
            if not node.name:
                continue
            if node.name in used:
                base, k = node.name, 1
                while f"{base}_{k}" in seen:
                    k += 1
                node.name = f"{base}_{k}"
                seen.add(node.name)
                renamed += 1
            used.add(node.name)
        return PassResult(self.name, bool(renamed), {"nodes_renamed": renamed})


class BypassConstantIdentities(Pass):
    """An Identity of a constant is the constant: its readers read the constant itself, and the
    Identity goes (chains of them too).

    The TorchScript exporter writes such Identities when it merges parameters of equal value: the
    weight of a zero-initialised layer (a residual branch's last conv with its BatchNorm scale at
    zero, folded) reaches every other conv of the same shape through an Identity. Left in place,
    those convs' weight is "computed at run time" and everything they touch is pinned; read
    directly, the weight is tied, like a parameter two layers share, and its readers are pruned
    together (a shared per-channel constant is then given one copy per reader by
    UnshareVectorConstants). Identities whose output is a graph output, or is read inside a
    subgraph, stay.
    """

    def call(self, model: onnx.ModelProto) -> PassResult:
        graph = model.graph
        constants = {t.name for t in graph.initializer}
        fixed = outputs_and_subgraph_reads(graph)
        source: dict[str, str] = {}  # an Identity's output -> the constant it passes on
        for node in graph.node:
            if (
                node.op_type == "Identity"
                and is_default_domain(node.domain)
                and len(node.input) == 1
                and node.output[0] not in fixed
            ):
                name = source.get(node.input[0], node.input[0])
                if name in constants:
                    source[node.output[0]] = name
        if not source:
            return PassResult(self.name, False)
        kept = []
        for node in graph.node:
            if node.op_type == "Identity" and node.output[0] in source:
                continue
            for index, name in enumerate(node.input):
                if name in source:
                    node.input[index] = source[name]
            kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)
        return PassResult(self.name, True, {"identities_bypassed": len(source)})


class UnshareVectorConstants(Pass):
    """Give every reader of a shared per-channel constant its own copy.

    Exporters merge constants of equal value: with untrained weights the TorchScript exporter
    reads one zero bias through Identity nodes into many convs, and tf2onnx merges equal Const
    nodes. Left shared, the constant couples the channels of every conv that reads it, so they
    could only be pruned together. A float constant with at most one axis longer than 1 (a
    bias, a scale, a BatchNorm statistic) that several nodes read only as a per-channel
    operand (a Conv or Gemm bias, a normalization parameter, an elementwise operand) gets one
    copy per reader; an Identity of such a constant becomes a constant itself. What the model
    computes does not change. A larger shared tensor is a tied weight and stays shared, as do
    constants in `keep`, graph outputs and constants read inside a subgraph.

    The copies are not weights of the input model: the plan never names them (DESIGN.md),
    and as per-channel operands their removed entries never need masking.
    """

    def __init__(self, keep: Iterable[str] = (), table: OpTable | None = None) -> None:
        self.keep = frozenset(keep)
        self.table = table or default_op_table()

    def call(self, model: onnx.ModelProto) -> PassResult:
        graph = model.graph
        opset = default_opset(model)
        inits = {t.name: t for t in graph.initializer}
        outputs = {o.name for o in graph.output}
        fixed = self.keep | outputs_and_subgraph_reads(graph)
        candidates = {
            name
            for name, t in inits.items()
            if name not in fixed and t.data_type in FLOAT_TYPES and _is_vector(t.dims)
        }
        readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name in candidates:
                    readers.setdefault(name, []).append((node, index))
        taken: set[str] | None = None  # every name in the graph, gathered when a copy needs one
        copies, folded = 0, set()
        for name, uses in readers.items():
            if not all(_per_channel_operand(node, index, self.table, opset) for node, index in uses):
                continue
            nodes = list(dict.fromkeys(id(node) for node, _ in uses))
            if len(nodes) < 2:
                continue
            source = inits[name]
            for node, index in uses:
                if node.op_type == "Identity" and node.output[0] not in outputs:
                    # the copy takes the Identity's output name, and the Identity goes
                    folded.add(id(node))
                    graph.initializer.append(_copy_tensor(source, node.output[0]))
                    copies += 1
                elif id(node) != nodes[0]:  # the first reader keeps the constant itself
                    if taken is None:
                        taken = graph_defines(graph)
                    clone = fresh_name(f"{name}__{node.name or node.op_type}", taken)
                    taken.add(clone)
                    graph.initializer.append(_copy_tensor(source, clone))
                    node.input[index] = clone
                    copies += 1
        if folded:
            keep_nodes = [n for n in graph.node if id(n) not in folded]
            del graph.node[:]
            graph.node.extend(keep_nodes)
        return PassResult(self.name, bool(copies), {"constants_unshared": copies})


def _per_channel_operand(node: onnx.NodeProto, index: int, table: OpTable, opset: int) -> bool:
    """True when `node` reads input `index` element by element along the channels: its entries
    for removed channels go with those channels and never need masking."""
    if not is_default_domain(node.domain):
        return False
    entry = table.lookup(node.domain, node.op_type, opset)
    return entry is not None and entry.reads_per_channel(index)


def _is_vector(dims) -> bool:
    return math.prod(dims) > 1 and sum(1 for d in dims if d > 1) == 1


def _copy_tensor(source: onnx.TensorProto, name: str) -> onnx.TensorProto:
    tensor = onnx.TensorProto()
    tensor.CopyFrom(source)
    tensor.name = name
    return tensor


class DropInitializerInputs(Pass):
    """Initializers listed as graph inputs (IR < 4 style) become plain weights (IR >= 4 only)."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        if model.ir_version < 4:
            return PassResult(self.name, False)
        names = {t.name for t in model.graph.initializer}
        inputs = [vi for vi in model.graph.input if vi.name not in names]
        dropped = len(model.graph.input) - len(inputs)
        if dropped:
            del model.graph.input[:]
            model.graph.input.extend(inputs)
        return PassResult(self.name, bool(dropped), {"inputs_dropped": dropped})


class FoldShapes(Pass):
    """Fold shape arithmetic on static dimensions into constants.

    `Shape` of a static tensor, `Gather(Shape(x), i)` of static dims, and small integer
    ops whose inputs are all constant become initializers, so Reshape targets and Slice
    bounds become constants the op rules can read and rewrite.
    """

    def call(self, model: onnx.ModelProto) -> PassResult:
        folded = fold_shapes(model)
        return PassResult(self.name, bool(folded), {"nodes_folded": folded})


class SimplifyReshapeTargets(Pass):
    """Reshape targets built at run time from the input's own dims become constants.

    A target `Concat(Unsqueeze(Gather(Shape(x), 0)), [2], [58], ...)` that copies dim j of the
    Reshape's own input into entry j becomes `0` there (copy, when allowzero is 0); a single
    remaining run-time entry becomes `-1`. The Reshape computes the same, its target is now
    a constant the analyzer can read and the rewriter can edit, and dynamic dims stay dynamic.
    """

    def __init__(self, analyses: AnalysisCache | None = None) -> None:
        self.analyses = analyses if analyses is not None else AnalysisCache()

    def call(self, model: onnx.ModelProto) -> PassResult:
        graph = model.graph
        consts = {t.name for t in graph.initializer}
        ctx = self.analyses.rule_context(model)  # shape_entries reads Concat-built targets, as analysis does
        simplified = 0
        for node in graph.node:
            if node.op_type != "Reshape" or not is_default_domain(node.domain) or node.input[1] in consts:
                continue
            entries = ctx.shape_entries(node.input[1])
            if entries is None:
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            values: list[int | None] = []
            for j, entry in enumerate(entries):
                if isinstance(entry, tuple) and entry == (node.input[0], j) and not allowzero:
                    values.append(0)
                elif isinstance(entry, tuple) or entry is None:
                    values.append(None)
                else:
                    values.append(entry)
            unknown = [j for j, v in enumerate(values) if v is None]
            if len(unknown) > 1 or (unknown and -1 in values):
                continue
            for j in unknown:
                values[j] = -1
            name = fresh_name(f"{node.output[0]}__target", consts)
            graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
            consts.add(name)
            node.input[1] = name
            simplified += 1
        return PassResult(self.name, bool(simplified), {"reshape_targets_simplified": simplified})


class ResolveReshapeShapes(Pass):
    """Write the output shapes of Reshape nodes that ONNX inference leaves open.

    `Reshape(q, Concat(Shape(x)[0], Shape(x)[1], [-1], [64]))` has an output ONNX infers as
    `[B, S, ?, 64]`: the -1 cancels against B and S only symbolically. The analyzer's own
    resolution (`reshape_output`) gives `[B, S, 12, 64]`; with it in value_info, inference
    downstream sees the static head count. Run with `InferShapes(keep_resolved=True)`.
    """

    def __init__(self, analyses: AnalysisCache | None = None) -> None:
        self.analyses = analyses if analyses is not None else AnalysisCache()

    def call(self, model: onnx.ModelProto) -> PassResult:
        ctx = self.analyses.rule_context(model)
        infos = {vi.name: vi for vi in model.graph.value_info}
        resolved = 0
        for node in model.graph.node:
            if node.op_type != "Reshape" or not is_default_domain(node.domain):
                continue
            y = node.output[0]
            current, x_shape = ctx.shape(y), ctx.shape(node.input[0])
            target = ctx.shape_entries(node.input[1])
            if current is None or x_shape is None or target is None or y not in infos:
                continue
            allowzero = bool(ctx.attr(node, "allowzero", 0))
            shape = reshape_output(x_shape, target, allowzero, ctx, current)
            if shape is None or len(shape) != len(current):
                continue
            # better: a size where inference has a symbol or nothing, or an input's symbol (the
            # batch a flatten keeps) where it has nothing or a symbol of its own (unk__N)
            better = [
                (axis, value)
                for axis, (value, now) in enumerate(zip(shape, current, strict=True))
                if (isinstance(value, int) and not isinstance(now, int))
                or (isinstance(value, str) and _open_dim(now) and not _open_dim(value))
            ]
            if not better:
                continue
            dims = infos[y].type.tensor_type.shape.dim
            for axis, value in better:
                dims[axis].Clear()
                if isinstance(value, int):
                    dims[axis].dim_value = value
                else:
                    dims[axis].dim_param = value
            resolved += 1
        return PassResult(self.name, bool(resolved), {"reshape_shapes_resolved": resolved})


def _open_dim(dim: int | str | None) -> bool:
    """A dim inference left unnamed, or named with a placeholder of its own (`unk__3`)."""
    return dim is None or (isinstance(dim, str) and dim.startswith("unk__"))


class FoldReshapeRoundTrips(Pass):
    """`Reshape(x: [B, H, S, D] -> [B*H, S, D]) -> Transpose(s) keeping axis 0 -> Reshape(back to
    [B, H, ...])` becomes one Transpose of x.

    Exporters flatten leading batch axes around a transpose (PyTorch's SDPA path turns k.mT into
    this). The round trip hides the head axis inside a dynamic `B*H`; without it the heads are
    visible to the analyzer. The result computes the same values.
    """

    def __init__(self, analyses: AnalysisCache | None = None) -> None:
        self.analyses = analyses if analyses is not None else AnalysisCache()

    def call(self, model: onnx.ModelProto) -> PassResult:
        ctx = self.analyses.rule_context(model)
        replaced: dict[str, onnx.NodeProto] = {}  # name of the closing Reshape's output -> new Transpose
        dropped: set[int] = set()
        for first in model.graph.node:
            trip = _round_trip(first, ctx)
            if trip is None:
                continue
            chain, last, perm = trip
            replaced[last.output[0]] = helper.make_node(
                "Transpose", [first.input[0]], [last.output[0]], name=last.name or last.output[0], perm=perm
            )
            dropped |= {id(first), *(id(n) for n in chain), id(last)}
        if not replaced:
            return PassResult(self.name, False, {"reshape_round_trips_folded": 0})
        nodes = []
        for node in model.graph.node:
            if node.output and node.output[0] in replaced and node.op_type == "Reshape":
                nodes.append(replaced[node.output[0]])
            elif id(node) not in dropped:
                nodes.append(node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        return PassResult(self.name, True, {"reshape_round_trips_folded": len(replaced)})


def _round_trip(first: onnx.NodeProto, ctx) -> tuple[list[onnx.NodeProto], onnx.NodeProto, list[int]] | None:
    if first.op_type != "Reshape" or not is_default_domain(first.domain):
        return None
    x_shape, merged = ctx.shape(first.input[0]), ctx.shape(first.output[0])
    if x_shape is None or merged is None or None in x_shape or None in merged:
        return None
    k = len(x_shape) - len(merged)
    if k < 1 or list(merged[1:]) != list(x_shape[k + 1 :]):
        return None
    chain: list[onnx.NodeProto] = []
    perm = list(range(len(merged)))
    tensor = first.output[0]
    while True:
        readers = ctx.consumers(tensor)
        if len(readers) != 1 or ctx.is_graph_output(tensor):
            return None
        node = readers[0]
        if node.op_type == "Transpose":
            step = list(ctx.attr(node, "perm") or range(len(merged))[::-1])
            if step[0] != 0:
                return None
            perm = [perm[i] for i in step]
            chain.append(node)
            tensor = node.output[0]
            continue
        break
    last = node
    out, before = ctx.shape(last.output[0]), ctx.shape(tensor)
    if last.op_type != "Reshape" or not chain or out is None or before is None or None in out:
        return None
    if list(out[: k + 1]) != list(x_shape[: k + 1]) or list(out[k + 1 :]) != list(before[1:]):
        return None
    return chain, last, list(range(k + 1)) + [p + k for p in perm[1:]]
