"""Recurrent layers: LSTM, GRU and RNN, uni- and bidirectional, both layouts.

A hidden unit h of a layer with G gates (LSTM 4, GRU 3, RNN 1) and hidden size H is the rows
{g * H + h} of W and R (every gate), the positions {k * H + h} of B (its Wb and Rb halves),
{g * H + h} of the LSTM peepholes P, column h of R (the recurrence reads the previous state),
and position h of the last axis of Y, Y_h, Y_c and the initial states. One virtual axis of H
positions couples them all; the hidden axis is shared by both directions of a bidirectional
layer (Y holds them on one axis), so a unit goes from both directions together, and the
`hidden_size` attribute is rewritten from it. The input feature axis of X couples with the
input columns of W. The direction axis is not a channel axis: it is pinned.

Removing a unit is exact under masking: zeroing its column of R (role in) stops it reaching
any other unit, its gates are its own rows, and its output is read by consumers that zero it.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from onnxprune.analysis.flow import ChannelFlow, Dim, FlowBuilder, RuleContext
from onnxprune.analysis.index_map import IndexMap
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import int_list, opt_input

HIDDEN = "::recurrent_hidden"
"""Suffix of the virtual hidden axis, after the name of the node's first output."""

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def hidden_dim(node: onnx.NodeProto) -> Dim:
    """The virtual axis of the hidden units of a recurrent node (read by its rewriter)."""
    anchor = next((o for o in node.output if o), node.name)
    return (anchor + HIDDEN, 0)


@channel_rule("LSTM", "GRU", "RNN", counts=("hidden_size",), per_channel=(3, 5, 6, 7))
def recurrent(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Y, Y_h[, Y_c] = LSTM/GRU/RNN(X, W, R, B, sequence_lens, initial_h[, initial_c, P]).

    Hidden units couple W/R/B rows of every gate, R's columns, the initial states and the
    outputs' last axis (see the module docstring); X's feature axis couples W's columns.
    """
    flow = FlowBuilder()
    gates = GATES[node.op_type]
    x, w, r = node.input[0], node.input[1], node.input[2]
    problem = _unsupported(node, ctx, gates)
    if problem is not None:
        for tensor in (*node.input, *node.output):
            if tensor:
                flow.pin_tensor(tensor, problem)
        return flow.build()
    hidden = int(ctx.shape(r)[2])
    batch_first = int(ctx.attr(node, "layout", 0)) == 1
    unit = flow.virtual_dim(hidden_dim(node)[0], hidden)
    every_gate = IndexMap.digit(1)  # unit h <-> positions p with p % H == h
    flow.link(unit, (w, 1), every_gate)
    flow.link(unit, (r, 1), every_gate)
    flow.link(unit, (r, 2))
    _role(flow, ctx, (w, 1), "out")
    _role(flow, ctx, (r, 1), "out")
    _role(flow, ctx, (r, 2), "in")
    flow.link((x, 2), (w, 2))
    _role(flow, ctx, (w, 2), "in")
    direction = (w, 0)
    flow.pin(direction, f"{node.op_type} direction axis: forward and backward are not channels")
    flow.link(direction, (r, 0))
    per_unit = [(opt_input(node, 3), every_gate), (opt_input(node, 7), every_gate)]  # B, P
    for tensor, index_map in per_unit:
        if tensor is not None:
            flow.link(unit, (tensor, 1), index_map)
            flow.link(direction, (tensor, 0))
            _role(flow, ctx, (tensor, 1), "out")
    seq_axis, batch_axis = (1, 0) if batch_first else (0, 1)
    y_axes = {"seq": 1, "dir": 2, "batch": 0} if batch_first else {"seq": 0, "dir": 1, "batch": 2}
    state_axes = {"dir": 1, "batch": 0} if batch_first else {"dir": 0, "batch": 1}
    y = node.output[0] if node.output and node.output[0] else None
    if y is not None:
        flow.link(unit, (y, 3))
        flow.link((x, seq_axis), (y, y_axes["seq"]))
        flow.link((x, batch_axis), (y, y_axes["batch"]))
        flow.link(direction, (y, y_axes["dir"]))
    given = [opt_input(node, 5), opt_input(node, 6) if node.op_type == "LSTM" else None]
    zeros = [s for s in given if s is not None and zero_fill(ctx, s)]
    for state in zeros:  # dropped by the rewriter (zero is the default): no coupling
        for axis in range(ctx.rank(state) or 0):
            flow.free((state, axis))
    states = [s for s in given if s not in zeros] + [o for o in node.output[1:] if o]
    for state in states:
        if state is None:
            continue
        flow.link(unit, (state, 2))
        flow.link((x, batch_axis), (state, state_axes["batch"]))
        flow.link(direction, (state, state_axes["dir"]))
        if ctx.is_weight(state):
            flow.role((state, 2), "out")
    lengths = opt_input(node, 4)
    if lengths is not None:
        flow.link((x, batch_axis), (lengths, 0))
    return flow.build()


_REARRANGE = ("Identity", "Unsqueeze", "Squeeze", "Concat", "Slice")
"""Ops the dynamo exporter builds recurrent weights with from the module's parameters (gate
order i, f, g, o reordered to i, o, f, c by Slices and a Concat, a direction axis unsqueezed);
their own rules link the axes, and the axis numbers of the weight pass through them unchanged
(Unsqueeze and Squeeze at the front only)."""


def weight_sources(ctx: RuleContext, tensor: str, axis: int) -> list[Dim] | None:
    """The initializer axes that axis `axis` of `tensor` is read from, through `_REARRANGE` ops;
    None when it is computed otherwise (from a graph input, by arithmetic)."""
    if ctx.is_weight(tensor):
        return [(tensor, axis)]
    node = ctx.producer(tensor)
    if node is None or node.op_type not in _REARRANGE:
        return None
    if node.op_type in ("Unsqueeze", "Squeeze"):
        axes = int_list(ctx, node, "axes", 1)
        if axes is None or [a % max(1, ctx.rank(tensor) or 1) for a in axes] != [0]:
            return None  # only a leading axis added or removed (the direction axis)
        if node.op_type == "Unsqueeze" and axis == 0:
            return []  # the new axis: read from no weight axis
        axis += -1 if node.op_type == "Unsqueeze" else 1
    found: list[Dim] = []
    sources = node.input if node.op_type == "Concat" else node.input[:1]
    for source in sources:
        more = weight_sources(ctx, source, axis)
        if more is None:
            return None
        found += more
    return found


def _role(flow: FlowBuilder, ctx: RuleContext, dim: Dim, role: str) -> None:
    """Give `dim` its role, and the same role to the initializer axes it is built from."""
    flow.role(dim, role)
    for source in weight_sources(ctx, *dim) or ():
        flow.role(source, role)


def zero_fill(ctx: RuleContext, tensor: str) -> bool:
    """True when `tensor` is computed as all zeros: torch's initial states, `ConstantOfShape` or
    `Expand` of a zero constant, sliced per layer. Both exporters build one such tensor for every
    layer, which would couple the hidden units of all layers; as zero is the default initial
    state, the rewriter disconnects it instead of resizing it."""
    node = ctx.producer(tensor)
    for _ in range(8):
        if node is None:
            return False
        if node.op_type == "ConstantOfShape":
            value = ctx.attr(node, "value")
            return value is None or not numpy_helper.to_array(value).any()
        if node.op_type == "Expand":
            fill = ctx.small_const(node.input[0])
            return fill is not None and not fill.any()
        if node.op_type not in ("Slice", "Squeeze", "Unsqueeze", "Identity", "Cast"):
            return False
        node = ctx.producer(node.input[0])
    return False


def _unsupported(node: onnx.NodeProto, ctx: RuleContext, gates: int) -> str | None:
    """Why the rule cannot map `node` (None when it can): weights computed at run time other
    than by rearranging initializers, or shapes that do not fit the op's definition."""
    w, r = node.input[1], node.input[2]
    for tensor in (w, r, opt_input(node, 3), opt_input(node, 7)):
        if tensor is not None and weight_sources(ctx, tensor, 0) is None:
            return f"{node.op_type} weight '{tensor}' is computed at run time"
    w_shape, r_shape, x_rank = ctx.shape(w), ctx.shape(r), ctx.rank(node.input[0])
    if w_shape is None or r_shape is None or x_rank != 3 or len(w_shape) != 3 or len(r_shape) != 3:
        return f"{node.op_type} weight or input shapes unknown"
    hidden = r_shape[2]
    declared = ctx.attr(node, "hidden_size")
    if not isinstance(hidden, int) or w_shape[1] != gates * hidden or r_shape[1] != gates * hidden:
        return f"{node.op_type} weights {list(w_shape)} and {list(r_shape)} do not hold {gates} gates"
    if declared is not None and int(declared) != hidden:
        return f"{node.op_type} hidden_size {declared} does not match R of {hidden} columns"
    return None
