"""What an op rule says about one node: which channel axes it couples and which it pins.

A rule is a pure function `(node, ctx) -> ChannelFlow`. Axes of the node's inputs and
outputs that the flow neither links nor marks are pinned by the analyzer: an op is
conservative about every axis it does not explicitly understand.

>>> flow = FlowBuilder()
>>> flow.link(("x", 1), ("y", 1))
>>> flow.build().links[0].a
('x', 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.analysis.index_map import IndexMap
from onnxprune.graph import (
    Shape,
    consumers,
    default_opset,
    is_default_domain,
    norm_domain,
    producers,
    shape_of,
    value_infos,
)

Dim = tuple[str, int]
"""A channel axis: (tensor name, non-negative axis). Virtual dims use a tensor name with '::'."""

Role = Literal["in", "out"]

_IDENTITY = IndexMap.identity()


class Link(NamedTuple):
    """Positions of `a` and `b` joined by `index_map` are removed together (a named tuple: rules
    make thousands of them)."""

    a: Dim
    b: Dim
    index_map: IndexMap


_new_link = tuple.__new__  # Link(a, b, m) without the keyword handling of a named tuple's __new__


@dataclass(frozen=True)
class Pin:
    """`dim` (or every axis of `dim[0]` when the axis is -1) cannot lose positions."""

    dim: Dim
    reason: str


@dataclass(frozen=True)
class ChannelFlow:
    """A rule's answer for one node."""

    links: tuple[Link, ...] = ()
    pins: tuple[Pin, ...] = ()
    roles: tuple[tuple[Dim, Role], ...] = ()
    virtual_sizes: tuple[tuple[str, int], ...] = ()
    free: tuple[Dim, ...] = ()
    choices: tuple[tuple[tuple[Link, ...], ...], ...] = ()
    inherited_roles: tuple[tuple[Dim, Dim], ...] = ()


@dataclass
class FlowBuilder:
    """Mutable helper rules use to assemble a ChannelFlow."""

    links: list[Link] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    roles: dict[Dim, Role] = field(default_factory=dict)
    virtual: dict[str, int] = field(default_factory=dict)
    free_dims: list[Dim] = field(default_factory=list)
    choice_sets: list[tuple[tuple[Link, ...], ...]] = field(default_factory=list)
    inherits: list[tuple[Dim, Dim]] = field(default_factory=list)

    def link(self, a: Dim, b: Dim, index_map: IndexMap | None = None) -> None:
        self.links.append(_new_link(Link, (a, b, index_map or _IDENTITY)))

    def link_axes(self, src: str, dst: str, axes: Iterable[int]) -> None:
        """Identity-link axis k of `src` to axis k of `dst`, for every k in `axes`."""
        self.links += [_new_link(Link, ((src, k), (dst, k), _IDENTITY)) for k in axes]

    def pin(self, dim: Dim, reason: str) -> None:
        self.pins.append(Pin(dim, reason))

    def pin_tensor(self, tensor: str, reason: str) -> None:
        self.pins.append(Pin((tensor, -1), reason))

    def choose(self, alternatives: list[list[Link]]) -> None:
        """Exactly one of `alternatives` (lists of links) holds; the analyzer picks the one that
        leaves the most weights prunable (the first on ties). Axes an alternative leaves out are
        pinned when another is chosen."""
        options = tuple(tuple(alt) for alt in alternatives if alt)
        if len(options) == 1:
            self.links.extend(options[0])
        elif options:
            self.choice_sets.append(options)

    def free(self, dim: Dim) -> None:
        """The op does not care if `dim` loses positions (Shape on an axis nobody reads)."""
        self.free_dims.append(dim)

    def role(self, dim: Dim, role: Role) -> None:
        self.roles[dim] = role

    def role_from(self, dim: Dim, source: Dim) -> None:
        """`dim` (a stored weight axis) takes the role its readers give `source` (the value the
        node computes from it: a dequantized weight read by a Conv)."""
        self.inherits.append((dim, source))

    def virtual_dim(self, name: str, size: int) -> Dim:
        """A dim that belongs to no tensor (the local channel index inside a conv group)."""
        self.virtual[name] = size
        return (name, 0)

    def build(self) -> ChannelFlow:
        return ChannelFlow(
            tuple(self.links),
            tuple(self.pins),
            tuple(self.roles.items()),
            tuple(self.virtual.items()),
            tuple(self.free_dims),
            tuple(self.choice_sets),
            tuple(self.inherits),
        )


class RuleContext:
    """Read-only facts about the graph a rule may ask for: shapes, constants, attributes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.opset = default_opset(model)
        self.opsets = {norm_domain(o.domain): o.version for o in model.opset_import}
        self.opsets["ai.onnx"] = self.opsets.get("", 0)  # both spellings of the default domain
        self._consts: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self._const_cache: dict[str, np.ndarray] = {}
        # shapes are read from the protos when first asked for (most tensors never are, and some
        # passes make a context without asking for any)
        self._graph = graph
        self._infos: dict[str, onnx.ValueInfoProto | onnx.TensorProto] | None = None
        self._shapes: dict[str, Shape | None] = {}
        self._graph_outputs = {vi.name for vi in graph.output}
        self._nodes = graph.node
        self._consumers: dict[str, list[onnx.NodeProto]] | None = None  # built when first asked for
        self._producers: dict[str, onnx.NodeProto] | None = None

    def opset_of(self, domain: str) -> int:
        """The opset version the model imports for `domain` (0 when it imports none)."""
        return self.opsets.get(domain, 0)

    def is_graph_output(self, tensor: str) -> bool:
        return tensor in self._graph_outputs

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        """The node that computes `tensor` (None for graph inputs and initializers)."""
        if self._producers is None:
            self._producers = producers(self._nodes)
        return self._producers.get(tensor)

    def shape_entries(self, tensor: str) -> list[int | Dim | None] | None:
        """Values of a 1-D int tensor used as a shape, entry by entry: an int where constant, the
        (tensor, axis) whose size it copies where it is `Gather(Shape(t), i)` (through Unsqueeze,
        Squeeze, Cast) or `Shape(t)` itself, None where unknown. Follows one Concat of pieces
        (`[Shape(x)[0], -1, 64]`)."""
        const = self.small_const(tensor)
        if const is not None:
            return [int(v) for v in const.reshape(-1)]
        node = self.producer(tensor)
        if node is None or not is_default_domain(node.domain):
            return None
        if node.op_type in ("Cast", "Identity") or (node.op_type == "Reshape" and self.rank(tensor) == 1):
            return self.shape_entries(node.input[0])  # a cast or flattened shape vector (tf2onnx, torch)
        if node.op_type == "Shape":  # another tensor's whole shape (torch's reshape_as, expand_as)
            return self._dims_read(tensor)
        if node.op_type == "Where":  # torch's expand: Where(Equal(s, -1), ones, s)
            return self._expand_sizes(node)
        if node.op_type != "Concat":
            return None
        entries: list[int | Dim | None] = []
        for piece in node.input:
            value = self.small_const(piece)
            shape = self.shape(piece)
            if value is not None:
                entries.extend(int(v) for v in value.reshape(-1))
            elif shape is not None and len(shape) <= 1 and all(isinstance(d, int) for d in shape):
                width = shape[0] if shape else 1
                read = self._dims_read(piece)
                entries.extend(read if read is not None and len(read) == width else [None] * width)
            else:
                return None
        return entries

    def _expand_sizes(self, node: onnx.NodeProto) -> list[int | Dim | None] | None:
        """Entries of `Where(Equal(s, p), r, s)` with a negative constant `p`, as torch writes
        `x.expand(b, -1, n)`: those of s, where an entry equal to p takes r's (the replacement
        is a constant; when it is not, s must have no such entry)."""
        cond = self.producer(node.input[0])
        kept = self.shape_entries(node.input[2])
        probe = self.small_const(cond.input[1]) if cond is not None and cond.op_type == "Equal" else None
        if probe is None or (probe >= 0).any() or cond.input[0] != node.input[2]:
            return None
        if kept is None or None in kept:
            return None
        if all(not isinstance(e, int) or e >= 0 for e in kept):
            return kept
        values = np.unique(probe)
        replacement = self.small_const(node.input[1])
        if len(values) != 1 or replacement is None or replacement.size not in (1, len(kept)):
            return None
        swap = np.broadcast_to(replacement.reshape(-1), (len(kept),)).tolist()
        return [int(swap[j]) if isinstance(e, int) and e == values[0] else e for j, e in enumerate(kept)]

    def shape_concat_path(self, tensor: str) -> list[tuple[onnx.NodeProto, int]] | None:
        """The nodes that compute `tensor` from the Concat whose pieces `shape_entries(tensor)`
        reads (through a flattening Reshape, a Cast or torch's Where(Equal(s, -1), 1, s)): the
        Concat first, then each node with the input it reads the one before through; None when
        the entries are not built by a Concat."""
        path: list[tuple[onnx.NodeProto, int]] = []
        node = self.producer(tensor)
        while node is not None and node.op_type in ("Reshape", "Where", "Cast", "Identity"):
            follow = 2 if node.op_type == "Where" else 0
            path.append((node, follow))
            node = self.producer(node.input[follow])
        if node is None or node.op_type != "Concat":
            return None
        return [(node, -1), *reversed(path)]

    def _dims_read(self, tensor: str) -> list[Dim] | None:
        node = self.producer(tensor)
        while node is not None and node.op_type in ("Unsqueeze", "Squeeze", "Cast", "Identity"):
            node = self.producer(node.input[0])
        if node is not None and node.op_type == "Shape":  # Shape(x, start, end) read directly
            rank = self.rank(node.input[0])
            if rank is None:
                return None
            start, end = int(self.attr(node, "start", 0)), self.attr(node, "end", rank)
            start, end = (
                (start + rank if start < 0 else start),
                (int(end) + rank if int(end) < 0 else int(end)),
            )
            return [(node.input[0], a) for a in range(max(start, 0), min(end, rank))]
        if node is not None and node.op_type == "Slice":  # Shape(x)[a:b]
            source = self._dims_read(node.input[0])
            bounds = [self.small_const(i) if i else None for i in node.input[1:5]]
            if source is None or bounds[0] is None or bounds[1] is None:
                return None
            if any(
                b is not None and int(b.reshape(-1)[0]) != v for b, v in zip(bounds[2:], (0, 1), strict=False)
            ):
                return None  # axes other than 0, or a step: not a plain range
            start, end = int(bounds[0].reshape(-1)[0]), int(bounds[1].reshape(-1)[0])
            return source[slice(start, end)]
        if node is None or node.op_type != "Gather" or self.attr(node, "axis", 0) != 0:
            return None
        shape_node = self.producer(node.input[0])
        while shape_node is not None and shape_node.op_type in ("Cast", "Identity"):  # tf2onnx casts
            shape_node = self.producer(shape_node.input[0])
        indices = self.small_const(node.input[1])
        if shape_node is None or shape_node.op_type != "Shape" or indices is None:
            return None
        rank = self.rank(shape_node.input[0])
        start = int(self.attr(shape_node, "start", 0))
        if rank is None:
            return None
        start = start + rank if start < 0 else start
        out = []
        for i in indices.reshape(-1):
            axis = start + (int(i) + (rank - start) if int(i) < 0 else int(i))
            if not 0 <= axis < rank:
                return None
            out.append((shape_node.input[0], axis))
        return out

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        """Nodes that read `tensor` (empty for graph outputs nobody else reads)."""
        if self._consumers is None:
            self._consumers = consumers(self._nodes)
        return self._consumers.get(tensor, [])

    def shape(self, tensor: str) -> Shape | None:
        """Static shape of `tensor` (None entries for dynamic dims), or None if the rank is unknown."""
        try:
            return self._shapes[tensor]
        except KeyError:
            if self._infos is None:
                self._infos = {**value_infos(self._graph), **self._consts}
            info = self._infos.get(tensor)
            shape = None if info is None else shape_of(info)
            self._shapes[tensor] = shape
            return shape

    def size(self, dim: Dim) -> int | None:
        """Static size of one axis, or None when it is dynamic or unknown."""
        shape = self.shape(dim[0])
        if shape is None or not 0 <= dim[1] < len(shape):
            return None
        value = shape[dim[1]]
        return value if isinstance(value, int) else None

    def rank(self, tensor: str) -> int | None:
        shape = self._shapes[tensor] if tensor in self._shapes else self.shape(tensor)
        return None if shape is None else len(shape)

    def is_weight(self, tensor: str) -> bool:
        """True for initializers (Constant nodes become initializers during normalization)."""
        return tensor in self._consts

    def is_dequantized_weight(self, tensor: str) -> bool:
        """True for the output of a DequantizeLinear of an initializer (a QDQ model's weight)."""
        node = self.producer(tensor)
        return (
            node is not None
            and node.op_type == "DequantizeLinear"
            and is_default_domain(node.domain)
            and self.is_weight(node.input[0])
        )

    def is_weight_like(self, tensor: str) -> bool:
        """An initializer, or a dequantized one: a constant whose axes a rule may slice."""
        return self.is_weight(tensor) or self.is_dequantized_weight(tensor)

    def const(self, tensor: str) -> np.ndarray | None:
        """Value of a constant input, or None if `tensor` is computed at run time."""
        if tensor not in self._consts:
            return None
        if tensor not in self._const_cache:
            self._const_cache[tensor] = numpy_helper.to_array(self._consts[tensor])
        return self._const_cache[tensor]

    def small_const(self, tensor: str, limit: int = 4096) -> np.ndarray | None:
        """Like const() but only for small tensors (shape constants, axes), without copying big weights."""
        proto = self._consts.get(tensor)
        if proto is None or math.prod(proto.dims) > limit:
            return None
        return self.const(tensor)

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default
