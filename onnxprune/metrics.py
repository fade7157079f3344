"""Model size and cost: parameter count, multiply-accumulates (MACs) and serialized size.

MACs count the four ops whose cost pruning removes: Conv, ConvTranspose, Gemm and MatMul of
the default ONNX domain in the main graph (nodes inside If/Loop bodies are not counted; local
functions are inlined first). Shapes come from ONNX shape inference on a lightweight copy of the
model whose dynamic input dims are made concrete; a needed shape that inference cannot give is
an error, never a silent zero.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[N, 8] x) => (float[N, 4] y) <float[8, 4] w = {0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
... 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}> { y = MatMul(x, w) }''')
>>> count_params(m), count_macs(m, batch=2)
(32, 64)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx
import onnx.inliner
import onnx.shape_inference

from onnxprune.errors import UsageError
from onnxprune.folding import constants_to_initializers, fold_shapes
from onnxprune.graph import FLOAT_TYPES, default_opset, is_default_domain
from onnxprune.graph import static_dims as tensor_dims
from onnxprune.macs import MacFormula, NodeShapes, ShapeUnknownError
from onnxprune.optable import OpTable, default_op_table
from onnxprune.shapeinfer import ShapeMemo, infer_value_info
from onnxprune.weights import weight_tensors

# Float weights with more elements than this are handed to shape inference as typed graph inputs
# instead of initializers: inference needs their shapes, never their values, and copying and
# serializing hundreds of MB of weights for it would be wasted work (and fails past 2 GB).
_INFERENCE_WEIGHT_LIMIT = 1024


@dataclass(frozen=True)
class ModelStats:
    """Size figures of one model: float parameters, MACs at the given shapes, serialized bytes.

    >>> ModelStats(params=10, macs=100, size_bytes=1234).params
    10
    """

    params: int
    macs: int
    size_bytes: int


def count_params(model: onnx.ModelProto) -> int:
    """Number of elements of the float (float32/16/64, bfloat16) weight-like tensors.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}, int64[1] s = {2}>
    ... { z = Add(x, b)  y = Reshape(z, s) }''')
    >>> count_params(m)
    2
    """
    return sum(math.prod(t.dims) for t in weight_tensors(model).values() if t.data_type in FLOAT_TYPES)


def concrete_shape(
    name: str,
    dims: Sequence[int | None] | None,
    given: Sequence[int] | None,
    *,
    batch: int,
    dynamic_default: int | None,
) -> list[int]:
    """Make the dims of graph input `name` concrete.

    A dynamic dim 0 becomes `batch`; any other dynamic dim takes its value from `given` (a full
    shape, as in ``input_shapes``; its entry for a dynamic dim 0 is ignored, non-positive entries
    mean "not given"), else `dynamic_default`, else UsageError (a ValueError) naming the input and
    dim. Static dims stay; `given` may not contradict them. Unknown rank (`dims` None) takes the
    rank of `given`.

    >>> concrete_shape("x", [None, 3, None], [1, 3, 32], batch=4, dynamic_default=None)
    [4, 3, 32]
    """
    if dims is None:
        if given is None:
            raise UsageError(f"input '{name}' has no known rank; give its shape in input_shapes")
        dims = [None] * len(given)
    if given is not None and len(given) != len(dims):
        raise UsageError(f"input '{name}' has rank {len(dims)}, but input_shapes gives {list(given)}")
    shape = []
    for axis, dim in enumerate(dims):
        wanted = given[axis] if given is not None and given[axis] > 0 else None
        if dim is not None:
            if wanted is not None and wanted != dim:
                raise UsageError(
                    f"input '{name}' dim {axis} is {dim} in the model, input_shapes gives {wanted}"
                )
            shape.append(dim)
        elif axis == 0:
            shape.append(batch)
        elif wanted is not None:
            shape.append(wanted)
        elif dynamic_default is not None:
            shape.append(dynamic_default)
        else:
            example = "x".join(str(d or (1 if i == 0 else 128)) for i, d in enumerate(dims))
            raise UsageError(
                f"input '{name}' dim {axis} is dynamic; give its size in input_shapes "
                f"(e.g. {{'{name}': [{', '.join(str(d or '?') for d in dims)}]}}; on the command "
                f"line --input-shape {name}:{example})"
            )
    return shape


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller feeds: those that are not initializers (old IR versions list both).

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) { y = Relu(x) }''')
    >>> [i.name for i in graph_inputs(m)]
    ['x']
    """
    initializers = {t.name for t in model.graph.initializer}
    return [info for info in model.graph.input if info.name not in initializers]


def check_input_names(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None) -> None:
    """Raise UsageError if `input_shapes` names something that is not a graph input of `model`."""
    if not input_shapes:
        return
    names = {info.name for info in graph_inputs(model)}
    unknown = sorted(set(input_shapes) - names)
    if unknown:
        raise UsageError(
            f"input_shapes names {unknown}, which are not graph inputs (inputs: {sorted(names)})"
        )


def _inference_copy(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None,
    batch: int,
    dynamic_default: int,
) -> onnx.ModelProto:
    """A copy of `model` for shape inference: concrete inputs, no value_info, big weights as inputs."""
    src = model.graph
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    copy.functions.extend(model.functions)
    graph = copy.graph
    graph.name = src.name
    fed = {info.name for info in graph_inputs(model)}
    given = input_shapes or {}
    for info in src.input:
        new = graph.input.add()
        new.CopyFrom(info)
        dims = tensor_dims(info)
        if (
            info.name in fed
            and info.type.HasField("tensor_type")
            and (dims is not None or info.name in given)
        ):
            shape = concrete_shape(
                info.name,
                dims,
                given.get(info.name),
                batch=batch,
                dynamic_default=dynamic_default,
            )
            target = new.type.tensor_type.shape
            target.ClearField("dim")
            for size in shape:
                target.dim.add().dim_value = size
    declared = {info.name for info in src.input}
    for tensor in src.initializer:
        if tensor.data_type in FLOAT_TYPES and math.prod(tensor.dims) > _INFERENCE_WEIGHT_LIMIT:
            if tensor.name not in declared:
                graph.input.append(
                    onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
                )
        else:
            graph.initializer.append(tensor)
    graph.sparse_initializer.extend(src.sparse_initializer)
    for node in src.node:
        big = _big_constant(node)
        if big is not None:
            graph.input.append(onnx.helper.make_tensor_value_info(node.output[0], big.data_type, big.dims))
        else:
            graph.node.append(node)
    for info in src.output:
        # declared output shapes are annotations like value_info: inference must give them afresh
        new = graph.output.add()
        new.CopyFrom(info)
        if new.type.HasField("tensor_type"):
            new.type.tensor_type.ClearField("shape")
    if copy.functions:
        copy = onnx.inliner.inline_local_functions(copy)
    return copy


def _big_constant(node: onnx.NodeProto) -> onnx.TensorProto | None:
    if node.op_type != "Constant" or not is_default_domain(node.domain) or not node.output:
        return None
    for attr in node.attribute:
        if (
            attr.name == "value"
            and attr.t.data_type in FLOAT_TYPES
            and math.prod(attr.t.dims) > _INFERENCE_WEIGHT_LIMIT
        ):
            return attr.t
    return None


def _known_shapes(
    model: onnx.ModelProto,
    infos: Sequence[onnx.ValueInfoProto] | None = None,
    symbols: Mapping[str, int] | None = None,
) -> dict[str, list[int] | None]:
    """Shapes of `infos` (default: graph inputs, value_info and outputs) and of the weights; a
    symbolic dim takes its size from `symbols`; None where a dim or the rank is unknown."""
    graph = model.graph
    symbols = symbols or {}
    shapes: dict[str, list[int] | None] = {}
    for info in (*graph.input, *graph.value_info, *graph.output) if infos is None else infos:
        if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
            shapes[info.name] = None
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else symbols.get(d.dim_param)
            for d in info.type.tensor_type.shape.dim
        ]
        shapes[info.name] = None if None in dims else dims
    for name, tensor in weight_tensors(model).items():
        shapes[name] = list(tensor.dims)
    return shapes


def count_macs(
    model: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    *,
    batch: int = 1,
    dynamic_default: int = 1,
) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul at concrete input shapes.

    Conv: output elements x C_in/group x kernel; ConvTranspose: input elements x C_out/group x
    kernel; Gemm: M x N x K (transA/transB respected); MatMul (also between two activations,
    batched and broadcast): output elements x K. Dynamic input dims: dim 0 is `batch`, others come
    from `input_shapes` (full shapes by input name) or are `dynamic_default`. The model is not
    modified. Raises ShapeUnknownError (a ValueError) naming the node and op when a needed shape
    cannot be inferred, and UsageError (a ValueError) when `input_shapes` does not fit the inputs.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, S, 4] a, float[N, 4, S] b) => (float[N, S, S] y) { y = MatMul(a, b) }''')
    >>> count_macs(m, {"a": [1, 5, 4], "b": [1, 4, 5]}, batch=2)
    200
    """
    return sum(macs_by_node(model, input_shapes, batch=batch, dynamic_default=dynamic_default).values())


def macs_by_node(
    model: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    *,
    batch: int = 1,
    dynamic_default: int = 1,
    shapes_inferred: bool = False,
    table: OpTable | None = None,
) -> dict[str, int]:
    """MACs of every Conv, ConvTranspose, Gemm and MatMul node, keyed by its first output name.

    Same conventions and errors as `count_macs`, which is the sum of these values. With
    `shapes_inferred`, the caller vouches that the model's value_info comes from shape inference
    on its current graph (as after ``InferShapes``): the counts then come from those shapes, with
    symbolic dims of the graph inputs made concrete, and inference runs only if one is missing.
    The formulas are those of `table` (default: `default_op_table()`).
    """
    terms = mac_terms(
        model,
        input_shapes,
        batch=batch,
        dynamic_default=dynamic_default,
        shapes_inferred=shapes_inferred,
        table=table,
    )
    return terms.per_node()


@dataclass(frozen=True)
class MacTerms:
    """The MAC-counting nodes of a model with their formulas and the static shapes they read:
    `per_node()` sums them as `macs_by_node` does; a cost model re-evaluates a formula with some
    shapes narrowed (`onnxprune.costs`)."""

    shapes: Mapping[str, list[int] | None]
    nodes: tuple[tuple[int, onnx.NodeProto, MacFormula], ...]
    """(position in the graph, node, formula) of every node with a MAC formula."""

    def per_node(self, shapes: Mapping[str, list[int] | None] | None = None) -> dict[str, int]:
        """MACs by first output name at `shapes` (default: the model's own)."""
        shapes = self.shapes if shapes is None else shapes
        found: dict[str, int] = {}
        for position, node, formula in self.nodes:
            macs = formula(node, NodeShapes(shapes, node, position))
            if macs:
                found[node.output[0]] = found.get(node.output[0], 0) + macs
        return found


def mac_terms(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    batch: int = 1,
    dynamic_default: int = 1,
    shapes_inferred: bool = False,
    table: OpTable | None = None,
) -> MacTerms:
    """The MAC formulas of `model`'s nodes and the shapes they read (arguments as `macs_by_node`).
    Raises ShapeUnknownError when a formula needs a shape inference cannot give."""
    check_input_names(model, input_shapes)
    table = table or default_op_table()
    if shapes_inferred and not model.functions:
        shapes = _declared_shapes(model, input_shapes, batch, dynamic_default, table)
        if shapes is not None:
            terms = _terms(model, shapes, table)
            try:
                terms.per_node()
                return terms
            except ShapeUnknownError:
                pass  # a shape inference left symbolic or open: infer at concrete input sizes
    inferred = _inference_copy(model, input_shapes, batch, dynamic_default)
    try:
        # with concrete input sizes every shape computation folds to constants (legacy exports
        # compute Reshape targets from Shape, Gather and Constant nodes), however deep the chain
        constants_to_initializers(inferred)
        _infer_and_fold(inferred)
    except Exception as exc:  # as the pass manager did: any failure here means no shapes
        raise ShapeUnknownError(f"shape inference failed, cannot count MACs: {exc}") from exc
    terms = _terms(inferred, _known_shapes(inferred), table)
    terms.per_node()
    return terms


def _infer_and_fold(model: onnx.ModelProto, max_rounds: int = 64) -> None:
    """Shape inference and shape folding in turn until neither changes the model (a fixed
    point of both), or `max_rounds` rounds have run."""
    memo = ShapeMemo()
    steps = (lambda: infer_value_info(model, memo), lambda: fold_shapes(model) > 0)
    unchanged = count = 0
    while unchanged < len(steps) and count < max_rounds * len(steps):
        changed = steps[count % len(steps)]()
        count += 1
        unchanged = 0 if changed else unchanged + 1


def _terms(model: onnx.ModelProto, shapes: Mapping[str, list[int] | None], table: OpTable) -> MacTerms:
    opset = default_opset(model)
    nodes = []
    for position, node in enumerate(model.graph.node):
        formula = _formula(node, table, opset)
        if formula is not None and node.output:
            nodes.append((position, node, formula))
    return MacTerms(shapes, tuple(nodes))


def _formula(node: onnx.NodeProto, table: OpTable, opset: int):
    """The MAC formula of a default-domain node, or None."""
    if not table.has_macs(node.op_type) or not is_default_domain(node.domain):
        return None
    entry = table.lookup(node.domain, node.op_type, opset)
    return None if entry is None else entry.macs


def _declared_shapes(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None,
    batch: int,
    dynamic_default: int,
    table: OpTable,
) -> dict[str, list[int] | None] | None:
    """Shapes from the model's own value_info, each symbolic dim replaced by the concrete size its
    graph input takes (see `concrete_shape`); None if a graph input has an unnamed dynamic dim or
    one symbol would take two sizes. Shapes with other symbols or open dims are None."""
    symbols: dict[str, int] = {}
    given = input_shapes or {}
    for info in graph_inputs(model):
        dims = tensor_dims(info)
        if dims is None:
            return None
        concrete = concrete_shape(
            info.name, dims, given.get(info.name), batch=batch, dynamic_default=dynamic_default
        )
        for dim, size in zip(info.type.tensor_type.shape.dim, concrete, strict=True):
            if dim.HasField("dim_value"):
                continue
            if not dim.dim_param or symbols.setdefault(dim.dim_param, size) != size:
                return None
    # not graph.output: declared output types are the model's interface and may be stale
    # annotations (a static batch of 1); a Conv whose output is one makes the caller infer.
    # Only the tensors the counted ops read and write: the other shapes are never looked at.
    graph = model.graph
    opset = default_opset(model)
    counted = [node for node in graph.node if _formula(node, table, opset) is not None]
    needed = {name for node in counted for name in (*node.input, *node.output)}
    infos = [info for info in (*graph.input, *graph.value_info) if info.name in needed]
    return _known_shapes(model, infos, symbols)


def model_stats(
    model: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
    *,
    batch: int = 1,
    dynamic_default: int = 1,
) -> ModelStats:
    """Parameters, MACs (see count_macs) and serialized size in bytes of `model`.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 2] x) => (float[1, 2] y) <float[2, 2] w = {1.0, 0.0, 0.0, 1.0}>
    ... { y = MatMul(x, w) }''')
    >>> s = model_stats(m)
    >>> (s.params, s.macs, s.size_bytes > 0)
    (4, 4, True)
    """
    return ModelStats(
        params=count_params(model),
        macs=count_macs(model, input_shapes, batch=batch, dynamic_default=dynamic_default),
        size_bytes=model.ByteSize(),
    )
