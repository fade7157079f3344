"""Node rewriters: after channels are removed, fix the attributes and shape constants that
encode channel counts (Conv `group`, Split sizes, Slice bounds, Reshape targets, Resize sizes,
head counts).

A rewriter is a function `(node, edit) -> list[Rewrite]` tagged with the op types it serves
(`@rewrites("Split")`); the op table (`onnxprune.optable`) reads the tags of this module's
functions and joins each rewriter to the entry of its op. Nothing is registered on import.

>>> [spec for spec in rewriter_ops(split_sizes)]
[('', 'Split')]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.flow import Dim, RuleContext
from onnxprune.analysis.rules.attention import KV_HEADS, Q_HEADS, ROPE_HEADS
from onnxprune.analysis.rules.recurrent import hidden_dim, zero_fill
from onnxprune.graph import fresh_name, graph_defines, node_label, norm_domain, reader_counts
from onnxprune.plan import Rewrite

_TAG = "__rewrites__"


def rewrites(*op_types: str, domain: str = "") -> Callable[[Rewriter], Rewriter]:
    """Tag `fn` as the rewriter of each op type in `op_types` (of `domain`)."""

    def wrap(fn: Rewriter) -> Rewriter:
        setattr(fn, _TAG, (*getattr(fn, _TAG, ()), *((norm_domain(domain), op) for op in op_types)))
        return fn

    return wrap


def rewriter_ops(fn: object) -> tuple[tuple[str, str], ...]:
    """The (domain, op type) pairs `@rewrites` tagged `fn` with (empty for anything else)."""
    return getattr(fn, _TAG, ()) if callable(fn) else ()


class NodeEditor:
    """What a rewriter needs: shapes before pruning, kept positions, and safe constant edits."""

    def __init__(
        self,
        model: onnx.ModelProto,
        ctx: RuleContext,
        keeps: dict[Dim, np.ndarray],
        read: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.keeps = keeps
        self._read = read  # values read out of the model earlier: a tensor edited in place leaves it
        self._inits = {t.name: t for t in model.graph.initializer}
        self._readers = reader_counts(model.graph)
        self._names: set[str] | None = None  # every tensor name, gathered when a node is cloned
        self.inserted: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]] = []
        """Nodes cloned for one reader (see `private_concat`), each list to go right before its node."""

    def new_size(self, dim: Dim) -> int | None:
        """Size of an axis after pruning (None when the original size is unknown)."""
        if dim in self.keeps:
            return len(self.keeps[dim])
        return self.ctx.size(dim)

    def changed(self, dim: Dim) -> bool:
        return dim in self.keeps

    def set_const_input(self, node: onnx.NodeProto, index: int, array: np.ndarray) -> None:
        """Give input `index` of `node` a new constant value, cloning it if others read it too."""
        name = node.input[index]
        if self._readers.get(name, 0) > 1 or name not in self._inits:
            new_name = fresh_name(f"{name}__{node.output[0]}", self._inits)
            tensor = numpy_helper.from_array(array, new_name)
            self.model.graph.initializer.append(tensor)
            self._inits[new_name] = self.model.graph.initializer[-1]
            self._readers[name] -= 1
            self._readers[new_name] = 1
            node.input[index] = new_name
        else:
            self._inits[name].CopyFrom(numpy_helper.from_array(array, name))
            if self._read is not None:
                self._read.pop(name, None)

    def private_concat(self, node: onnx.NodeProto, index: int) -> onnx.NodeProto | None:
        """The Concat that builds input `index` of `node` (`RuleContext.shape_concat_path`), or
        None. When a tensor on the way is read elsewhere too (exporters compute one
        `[batch, sequence, heads, head_dim]` target for q, k and v), the Concat and the nodes
        after it are cloned for `node` alone first, so that editing its constant pieces changes
        no other reader; the clones go right before `node` (`inserted`)."""
        path = self.ctx.shape_concat_path(node.input[index])
        if path is None:
            return None
        if all(self._readers.get(n.output[0], 0) <= 1 for n, _ in path):
            return path[0][0]
        if self._names is None:
            graph = self.model.graph
            self._names = graph_defines(graph) | {n.name for n in graph.node}
        clones, previous = [], None
        for original, follow in path:
            clone = onnx.NodeProto()
            clone.CopyFrom(original)
            if previous is not None:
                clone.input[follow] = previous
            out = fresh_name(f"{original.output[0]}__{node.output[0]}", self._names)
            clone.output[0] = out
            if clone.name:
                clone.name = fresh_name(f"{original.name}__{node_label(node)}", self._names)
                self._names.add(clone.name)
            self._names.add(out)
            for name in clone.input:
                self._readers[name] = self._readers.get(name, 0) + 1
            if previous is not None:
                self._readers[previous] = 1
            clones.append(clone)
            previous = out
        self._readers[node.input[index]] -= 1
        node.input[index] = previous
        self._readers[previous] = 1
        self.inserted.append((node, clones))
        return clones[0]

    def add_const_input(self, node: onnx.NodeProto, index: int, array: np.ndarray) -> None:
        """Set optional input `index` of `node` to a new constant."""
        new_name = fresh_name(f"{node.output[0]}__{index}", self._inits)
        self.model.graph.initializer.append(numpy_helper.from_array(array, new_name))
        self._inits[new_name] = self.model.graph.initializer[-1]
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = new_name


Rewriter = Callable[[onnx.NodeProto, NodeEditor], list[Rewrite]]
"""Fixes the channel counts `node` stores; returns what it changed, for the plan."""


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _del_attr(node: onnx.NodeProto, name: str) -> None:
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            return


@rewrites("Conv", "ConvTranspose")
def conv_group(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    """A depthwise-like conv has one group per input channel: the group count follows them."""
    group = int(edit.ctx.attr(node, "group", 1))
    x, w = node.input[0], node.input[1]
    if group == 1 or not edit.changed((x, 1)):
        return []
    w_shape = edit.ctx.shape(w)
    per_group_in = w_shape[1] if node.op_type == "Conv" else w_shape[0] // group
    if per_group_in != 1:
        return []
    new_group = edit.new_size((x, 1))
    _set_attr(node, "group", int(new_group))
    return [Rewrite(node_label(node), "group", group, int(new_group))]


@rewrites("Split")
def split_sizes(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    x = node.input[0]
    rank = edit.ctx.rank(x)
    axis = int(edit.ctx.attr(node, "axis", 0)) % rank
    if not edit.changed((x, axis)):
        return []
    before = [int(edit.ctx.size((o, axis))) for o in node.output]
    after = [int(edit.new_size((o, axis))) for o in node.output]
    _del_attr(node, "num_outputs")
    if edit.ctx.opset >= 13:
        _del_attr(node, "split")
        array = np.asarray(after, dtype=np.int64)
        if len(node.input) > 1 and node.input[1]:
            edit.set_const_input(node, 1, array)
        else:
            edit.add_const_input(node, 1, array)
    else:
        _set_attr(node, "split", after)
    return [Rewrite(node_label(node), "split", before, after)]


@rewrites("Slice")
def slice_bounds(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    x, y = node.input[0], node.output[0]
    rank = edit.ctx.rank(x)
    if rank is None or not any(edit.changed((t, a)) for t in (x, y) for a in range(rank)):
        return []
    from_attrs = edit.ctx.opset < 10
    if from_attrs:
        starts = list(edit.ctx.attr(node, "starts"))
        ends = list(edit.ctx.attr(node, "ends"))
        axes = list(edit.ctx.attr(node, "axes", range(len(starts))))
    else:
        starts = [int(v) for v in edit.ctx.small_const(node.input[1]).reshape(-1)]
        ends = [int(v) for v in edit.ctx.small_const(node.input[2]).reshape(-1)]
        has_axes = len(node.input) > 3 and node.input[3]
        axes = (
            [int(v) for v in edit.ctx.small_const(node.input[3]).reshape(-1)]
            if has_axes
            else list(range(len(starts)))
        )
    new_starts, new_ends = list(starts), list(ends)
    for k, axis in enumerate(axes):
        axis %= rank
        if not (edit.changed((x, axis)) or edit.changed((y, axis))):
            continue
        size = edit.ctx.size((x, axis))
        start = min(max(starts[k] + size if starts[k] < 0 else starts[k], 0), size)
        keep_x = edit.keeps.get((x, axis), np.arange(size))
        new_start = int(np.count_nonzero(keep_x < start))
        new_starts[k] = new_start
        new_ends[k] = new_start + int(edit.new_size((y, axis)))
    if new_starts == starts and new_ends == ends:
        return []
    if from_attrs:
        _set_attr(node, "starts", new_starts)
        _set_attr(node, "ends", new_ends)
    else:
        edit.set_const_input(node, 1, np.asarray(new_starts, dtype=np.int64))
        edit.set_const_input(node, 2, np.asarray(new_ends, dtype=np.int64))
    return [Rewrite(node_label(node), "starts/ends", [starts, ends], [new_starts, new_ends])]


@rewrites("Reshape", "Expand", "ConstantOfShape")
def shape_target(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    """Literal target entries of axes that lost positions get their new size; -1, 0 (copy) and 1
    (broadcast) stay. The target (input 1; ConstantOfShape's input 0) may be a constant or a
    Concat of pieces; only the constant pieces that hold a changed entry are edited (cloned
    first when shared), run-time entries stay run-time."""
    y = node.output[0]
    at = 0 if node.op_type == "ConstantOfShape" else 1
    before = edit.ctx.shape_entries(node.input[at])
    if before is None:
        return []
    offset = (edit.ctx.rank(y) or len(before)) - len(before)
    keep_zero = node.op_type == "Reshape" and not int(edit.ctx.attr(node, "allowzero", 0))
    after = list(before)
    for j, value in enumerate(before):
        if not isinstance(value, int) or value in (-1, 1) or (value == 0 and keep_zero):
            continue
        if edit.changed((y, j + offset)):
            after[j] = int(edit.new_size((y, j + offset)))
    if after == before:
        return []
    target = edit.ctx.small_const(node.input[at])
    if target is not None:
        edit.set_const_input(node, at, np.asarray(after, dtype=target.dtype))
    else:
        concat = edit.private_concat(node, at)
        if concat is None:
            raise ValueError(
                f"{node.op_type} '{node_label(node)}': cannot locate the constants of its target"
            )
        position = 0
        for index, piece in enumerate(concat.input):
            value = edit.ctx.small_const(piece)
            width = value.size if value is not None else int(np.prod(edit.ctx.shape(piece), dtype=np.int64))
            if (
                value is not None
                and after[position : position + width] != before[position : position + width]
            ):
                new = np.asarray(after[position : position + width], dtype=value.dtype).reshape(value.shape)
                edit.set_const_input(concat, index, new)
            position += width
    what = {"Reshape": "shape", "Expand": "expand shape"}.get(node.op_type, "fill shape")
    return [Rewrite(node_label(node), what, _plain(before), _plain(after))]


def _plain(entries: list) -> list:
    """Entries for the plan's JSON: run-time sizes are written as the tensor:axis they copy."""
    return [f"{e[0]}:{e[1]}" if isinstance(e, tuple) else e for e in entries]


@rewrites("Resize")
def resize_sizes(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    y = node.output[0]
    if len(node.input) < 4 or not node.input[3]:
        return []
    sizes = edit.ctx.small_const(node.input[3])
    if sizes is None:
        return []
    before = [int(v) for v in sizes.reshape(-1)]
    rank = edit.ctx.rank(y)
    listed = edit.ctx.attr(node, "axes")  # sizes[k] is the size of axis axes[k] when given
    axes = list(range(len(before))) if listed is None or rank is None else [a % rank for a in listed]
    after = [
        int(edit.new_size((y, axis))) if edit.changed((y, axis)) else v
        for axis, v in zip(axes, before, strict=False)
    ]
    if after == before:
        return []
    edit.set_const_input(node, 3, np.asarray(after, dtype=sizes.dtype))
    return [Rewrite(node_label(node), "sizes", before, after)]


@rewrites("Attention", "RotaryEmbedding")
def head_counts(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    """`q_num_heads` / `kv_num_heads` / `num_heads` follow the kept heads (3-D layouts)."""
    y = node.output[0]
    names = {
        "Attention": (("q_num_heads", Q_HEADS), ("kv_num_heads", KV_HEADS)),
        "RotaryEmbedding": (("num_heads", ROPE_HEADS),),
    }[node.op_type]
    rewrites = []
    for attr, suffix in names:
        dim = (y + suffix, 0)
        before = edit.ctx.attr(node, attr)
        if before is not None and edit.changed(dim):
            after = len(edit.keeps[dim])
            _set_attr(node, attr, after)
            rewrites.append(Rewrite(node_label(node), attr, int(before), after))
    return rewrites


@rewrites("LSTM", "GRU", "RNN")
def hidden_size(node: onnx.NodeProto, edit: NodeEditor) -> list[Rewrite]:
    """`hidden_size` follows the kept hidden units (the rule's virtual hidden axis); initial states
    that are zeros computed at run time (`zero_fill`) are disconnected (zero is the default)."""
    dim = hidden_dim(node)
    before = edit.ctx.attr(node, "hidden_size")
    if not edit.changed(dim):
        return []
    after = len(edit.keeps[dim])
    _set_attr(node, "hidden_size", after)
    done = [Rewrite(node_label(node), "hidden_size", None if before is None else int(before), after)]
    for index in (5, 6):  # zero initial states computed at run time: zero is the default
        state = node.input[index] if len(node.input) > index else ""
        if state and zero_fill(edit.ctx, state):
            node.input[index] = ""
            done.append(Rewrite(node_label(node), f"input {index}", state, ""))
    return done
