"""Ops that move, merge, split, cut or join axes: the channel axis is tracked through them."""

from __future__ import annotations

import math
import re

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, Link, RuleContext, Shape
from onnxprune.analysis.index_map import IndexMap
from onnxprune.analysis.registry import channel_rule
from onnxprune.analysis.rules._common import int_list, link_same_axes, norm_axis, opt_input
from onnxprune.analysis.rules.vocabulary import pin_vocabulary


@channel_rule("Transpose")
def transpose(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Output axis i is input axis perm[i]."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    perm = ctx.attr(node, "perm") or list(range(rank))[::-1]
    for i, p in enumerate(perm):
        flow.link((y, i), (x, int(p)))
    return flow.build()


@channel_rule("Squeeze", "Unsqueeze")
def squeeze(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """The axes that stay keep their order; squeezed or inserted axes have size 1."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rx, ry = ctx.rank(x), ctx.rank(y)
    axes = int_list(ctx, node, "axes", 1)
    if rx is None or ry is None:
        return flow.build()
    if axes is None and node.op_type == "Squeeze":
        x_shape = ctx.shape(x)
        if any(not isinstance(d, int) for d in x_shape):
            return flow.build()
        axes = [i for i, d in enumerate(x_shape) if d == 1]
    if axes is None:
        return flow.build()
    if node.op_type == "Squeeze":
        kept = [i for i in range(rx) if i not in {norm_axis(a, rx) for a in axes}]
        pairs = zip(kept, range(ry), strict=False)
    else:
        kept = [i for i in range(ry) if i not in {norm_axis(a, ry) for a in axes}]
        pairs = zip(range(rx), kept, strict=False)
    for i, j in pairs:
        flow.link((x, i), (y, j))
    return flow.build()


@channel_rule("Flatten")
def flatten(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """[d0 .. d(a-1)] and [da .. dn] each merge into one axis (see `_merge`)."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    if x_shape is None or y_shape is None or len(y_shape) != 2:
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", 1)), len(x_shape))
    _merge(flow, x, x_shape, list(range(axis)), (y, 0))
    _merge(flow, x, x_shape, list(range(axis, len(x_shape))), (y, 1))
    return flow.build()


@channel_rule("Reshape", counts=(1,))
def reshape(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """A constant-target Reshape regroups axes whose sizes multiply alike.

    An unchanged axis maps to itself. Where axes merge (a channel becomes H*W features) or
    one axis splits (heads of head_dim channels, the two halves of a channel shuffle), one
    factor carries the channels and the others stay whole; the analyzer picks the factor.
    The target is a constant, or a Concat of constant pieces and
    run-time sizes (`[Shape(x)[0], 2, 58, 28, 28]`); only constant entries can change.
    """
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    target = ctx.shape_entries(node.input[1])
    x_shape = ctx.shape(x)
    _link_copied_sizes(flow, ctx, y, target)
    if target is None or x_shape is None:
        flow.pin_tensor(x, "Reshape target is computed at run time")
        return flow.build()
    y_shape = reshape_output(x_shape, target, bool(ctx.attr(node, "allowzero", 0)), ctx, ctx.shape(y))
    if y_shape is None:
        flow.pin_tensor(x, "Reshape target is computed at run time")
        return flow.build()
    for in_axes, out_axes in align_reshape(x_shape, y_shape):
        if any(target[j] is None and isinstance(y_shape[j], int) for j in out_axes):
            continue  # a static size computed at run time cannot be rewritten: leave these axes pinned
        if len(in_axes) == 1 and len(out_axes) == 1:
            flow.link((x, in_axes[0]), (y, out_axes[0]))
        elif len(out_axes) == 1:
            _merge(flow, x, x_shape, in_axes, (y, out_axes[0]))
        elif len(in_axes) == 1:
            _merge(flow, y, y_shape, out_axes, (x, in_axes[0]))
    return flow.build()


def _link_copied_sizes(flow: FlowBuilder, ctx: RuleContext, y: str, target: list | None) -> None:
    """A target entry `Shape(t)[a]` makes output axis j as long as axis a of t: the two lose
    positions together (the Shape rule leaves such an axis free for this reason)."""
    rank = ctx.rank(y)
    if target is None or rank is None or len(target) != rank:
        return
    for j, entry in enumerate(target):
        if isinstance(entry, tuple) and ctx.size(entry) is not None:
            flow.link((y, j), entry)


def reshape_output(x_shape: Shape, target: list, allowzero: bool, ctx: RuleContext, inferred: Shape | None):
    """The Reshape's output shape, entry by entry: static ints, symbolic names for dynamic sizes
    (a copied input dim, or a dim of another tensor read through Shape), -1 solved by cancelling
    equal symbols. Inferred static sizes win; None if the shape cannot be known.

    >>> reshape_output(("b", "s", 64), [("q", 0), ("q", 1), -1, 16], False, None, None)  # doctest: +SKIP
    ('b', 's', 4, 16)
    """
    x_shape = tuple(f"<unnamed {j}>" if d is None else d for j, d in enumerate(x_shape))
    out: list[int | str | None] = []
    for j, entry in enumerate(target):
        if isinstance(entry, tuple):
            shape = ctx.shape(entry[0])
            out.append(shape[entry[1]] if shape is not None else None)
        elif entry == 0 and not allowzero:
            out.append(x_shape[j] if j < len(x_shape) else None)
        else:
            out.append(entry)
    if inferred is not None and len(inferred) == len(out):
        out = [i if isinstance(i, int) else o for i, o in zip(inferred, out, strict=True)]
    if out.count(-1) > 1 or any(d is None for d in out):
        return None
    if -1 in out:
        in_static, leftover = _split_dims(x_shape)
        out_static, named = _split_dims(d for d in out if d != -1)
        for d in named:
            if d not in leftover:
                return None
            leftover.remove(d)
        if not out_static or in_static % out_static:
            return None
        ratio = in_static // out_static
        if not leftover:
            out[out.index(-1)] = ratio
        else:  # e.g. batch*sequence, or 196*batch for [batch, 196, 256] -> [-1, 256]
            out[out.index(-1)] = "*".join([*([str(ratio)] if ratio != 1 else []), *sorted(leftover)])
    return tuple(out)


_PRODUCT = re.compile(r"(?:\d+|[A-Za-z_][\w.]*)(?:\*(?:\d+|[A-Za-z_][\w.]*))+")
"""A dim named as a product (`196*batch`, `batch*sequence`): how this rule names a solved -1, and
how ONNX Runtime's symbolic inference names a merged axis."""


def _dim_factors(d: str) -> tuple[int, list[str]]:
    """A symbolic dim as (static factor, symbolic factors): a product name is split into its
    factors, any other name is one symbol."""
    if not _PRODUCT.fullmatch(d):
        return 1, [d]
    static, symbols = 1, []
    for part in d.split("*"):
        if part.isdigit():
            static *= int(part)
        else:
            symbols.append(part)
    return static, symbols


def _split_dims(dims) -> tuple[int, list[str]]:
    """The product of the static sizes among `dims` (static factors of product names included),
    and their symbolic factors."""
    static, symbols = 1, []
    for d in dims:
        if isinstance(d, int):
            static *= d
        else:
            factor, names = _dim_factors(d)
            static *= factor
            symbols += names
    return static, symbols


def align_reshape(x_shape: Shape, y_shape: Shape) -> list[tuple[list[int], list[int]]]:
    """Chunks (input axes, output axes) whose sizes have equal products, in order.

    Size-1 axes are left out. One dynamic axis per side is allowed when the static sizes
    have equal products (the dynamic axes then are equal too). Returns [] if no alignment.

    >>> align_reshape((None, 4, 3, 3), (None, 36))
    [([0], [0]), ([1, 2, 3], [1])]
    """
    primes = iter((1_000_003, 1_000_033, 1_000_037, 1_000_039, 1_000_081, 1_000_099, 1_000_117, 1_000_121))
    symbols: dict[str, int] = {}

    def symbol(name: str) -> int | None:
        if name not in symbols:
            symbols[name] = next(primes, None) or 0
        return symbols[name] or None

    def value(d) -> int | None:
        if isinstance(d, int):
            return d
        if isinstance(d, str):  # a product name is the product of its factors' values
            static, names = _dim_factors(d)
            values = [symbol(name) for name in names]
            return None if None in values else static * math.prod(values)
        return None

    # one unnamed dynamic axis per side may pair up when the static sizes match
    if sum(d is None for d in x_shape) == 1 and sum(d is None for d in y_shape) == 1:
        x_shape = tuple("<unnamed>" if d is None else d for d in x_shape)
        y_shape = tuple("<unnamed>" if d is None else d for d in y_shape)
    xs, ys = [value(d) for d in x_shape], [value(d) for d in y_shape]
    if None not in xs and None not in ys and math.prod(xs) == math.prod(ys):
        chunks = _chunks(
            xs, ys, [i for i, d in enumerate(xs) if d != 1], [j for j, d in enumerate(ys) if d != 1]
        )
        if chunks is not None:
            return chunks
    # the leading sizes are not comparable ([B, S, 64] -> [B*S, 64]): the static trailing axes
    # still align, row by row, since both sides hold the same number of elements
    xi = [i for i in range(len(xs) - 1, -1, -1) if xs[i] != 1]
    yi = [j for j in range(len(ys) - 1, -1, -1) if ys[j] != 1]
    chunks = _chunks(xs, ys, xi, yi, partial=True) or []
    return [(sorted(a), sorted(b)) for a, b in reversed(chunks)]


def _chunks(xs, ys, xi: list[int], yi: list[int], partial: bool = False):
    """Greedy chunks of equal products over the axes `xi` / `yi` in the order given; with
    `partial`, an unfinished last chunk is dropped instead of failing (None)."""
    chunks: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(xi) and j < len(yi):
        if xs[xi[i]] is None or ys[yi[j]] is None:
            return chunks if partial else None
        ins, outs = [xi[i]], [yi[j]]
        px, py = xs[xi[i]], ys[yi[j]]
        i, j = i + 1, j + 1
        while px != py:
            if px < py and i < len(xi) and xs[xi[i]] is not None:
                px *= xs[xi[i]]
                ins.append(xi[i])
                i += 1
            elif py < px and j < len(yi) and ys[yi[j]] is not None:
                py *= ys[yi[j]]
                outs.append(yi[j])
                j += 1
            else:
                return chunks if partial else None
        chunks.append((ins, outs))
    return chunks


def _merge(flow: FlowBuilder, src: str, shape: Shape, axes: list[int], merged: tuple[str, int]) -> None:
    """One of the non-1 axes among `axes` of `src` (the factors of the merged axis, outermost
    first) carries the merged axis's channels; which one is left to the analyzer to choose."""
    sizes = [shape[a] for a in axes]
    if len(axes) == 1:
        flow.link((src, axes[0]), merged)
        return
    if not axes or any(not isinstance(s, int) for s in sizes):
        return
    alternatives = []
    for k, size in enumerate(sizes):
        if size == 1:
            continue
        inner = math.prod(sizes[k + 1 :])
        alternatives.append([Link((src, axes[k]), merged, IndexMap.digit(inner))])
    flow.choose(alternatives)


@channel_rule("Expand", counts=(1,))
def expand(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Broadcast to a target shape: axes the input already has at full size pass through (their
    target entries are rewritten); axes broadcast from size 1 are pinned, unless the input is a
    constant of one value (torch's zero initial states): every position of the output is then
    the same value, and a literal target entry just follows the kept positions."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    target = ctx.shape_entries(node.input[1])
    _link_copied_sizes(flow, ctx, y, target)
    if x_shape is None or y_shape is None or target is None:
        flow.pin_tensor(x, "Expand target is computed at run time")
        return flow.build()
    offset = len(y_shape) - len(x_shape)
    for i, size in enumerate(x_shape):
        if size is not None and size == y_shape[i + offset] and size != 1:
            flow.link((x, i), (y, i + offset))
    if len(target) == len(y_shape) and is_uniform_constant(ctx, x):
        for j, entry in enumerate(target):
            if isinstance(entry, int) and entry > 1 and (j < offset or x_shape[j - offset] == 1):
                flow.free((y, j))
    return flow.build()


def is_uniform_constant(ctx: RuleContext, tensor: str) -> bool:
    """True for a small constant whose elements are all equal (a fill value)."""
    value = ctx.small_const(tensor)
    return value is not None and (value.size <= 1 or bool((value == value.reshape(-1)[0]).all()))


@channel_rule("ConstantOfShape", counts=(0,))
def constant_of_shape(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """A tensor of one value whose shape is the input vector: an axis whose size is a literal
    entry can lose positions (the entry is rewritten); an entry that copies a dim
    (`Concat(2, Shape(x)[0], 48)`, torch's initial states) links the two axes."""
    flow = FlowBuilder()
    y = node.output[0]
    entries = ctx.shape_entries(node.input[0])
    _link_copied_sizes(flow, ctx, y, entries)
    rank = ctx.rank(y)
    if entries is None or rank is None or len(entries) != rank:
        return flow.build()
    for j, entry in enumerate(entries):
        if isinstance(entry, int) and entry > 1:
            flow.free((y, j))
    return flow.build()


@channel_rule("Concat")
def concat(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Input k sits at the running offset along the concat axis; other axes are shared."""
    flow = FlowBuilder()
    y = node.output[0]
    rank = ctx.rank(y)
    if rank is None:
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", 0)), rank)
    offset = 0
    for name in node.input:
        size = ctx.size((name, axis))
        if size is None:
            flow.pin((y, axis), "Concat input of unknown size along the concat axis")
            return flow.build()
        if size:
            flow.link((name, axis), (y, axis), IndexMap.at_offset(offset))
        offset += size
        link_same_axes(flow, ctx, name, y, skip={axis})
    return flow.build()


@channel_rule("Split", counts=("split", "num_outputs", 1))
def split(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Output k is the range of the input at the running offset; its sizes are rewritten."""
    flow = FlowBuilder()
    x = node.input[0]
    rank = ctx.rank(x)
    if rank is None:
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", 0)), rank)
    offset = 0
    for out in node.output:
        size = ctx.size((out, axis))
        if size is None:
            flow.pin((x, axis), "Split output of unknown size")
            return flow.build()
        flow.link((out, axis), (x, axis), IndexMap.at_offset(offset))
        offset += size
        link_same_axes(flow, ctx, x, out, skip={axis})
    return flow.build()


@channel_rule("Slice", counts=("starts", "ends", 1, 2))
def slice_(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """A unit-step range along an axis maps output i to input start + i; bounds are rewritten."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    x_shape = ctx.shape(x)
    starts, ends = int_list(ctx, node, "starts", 1), int_list(ctx, node, "ends", 2)
    if x_shape is None or starts is None or ends is None:
        flow.pin_tensor(x, "Slice bounds are computed at run time")
        return flow.build()
    axes = int_list(ctx, node, "axes", 3) or list(range(len(starts)))
    steps = int_list(ctx, node, "steps", 4) or [1] * len(starts)
    sliced = {}
    for start, axis, step in zip(starts, axes, steps, strict=False):
        sliced[norm_axis(axis, len(x_shape))] = (start, step)
    for axis in range(len(x_shape)):
        if axis not in sliced:
            flow.link((x, axis), (y, axis))
            continue
        start, step = sliced[axis]
        size = ctx.size((x, axis))
        if size is None or step != 1:
            continue
        start = min(max(start + size if start < 0 else start, 0), size)
        flow.link((y, axis), (x, axis), IndexMap.at_offset(start))
    return flow.build()


@channel_rule("Gather")
def gather(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Axes of the data other than the gathered one pass through; the gathered axis is pinned
    (an embedding table's rows picked by run-time ids: a vocabulary, said so)."""
    flow = FlowBuilder()
    data, indices, y = node.input[0], node.input[1], node.output[0]
    rd, ri = ctx.rank(data), ctx.rank(indices)
    if rd is None or ri is None:
        return flow.build()
    axis = norm_axis(int(ctx.attr(node, "axis", 0)), rd)
    if ctx.is_weight(data) and not ctx.is_weight(indices):
        pin_vocabulary(flow, ctx, data, axis, indices)
    for i in range(rd):
        if i < axis:
            flow.link((data, i), (y, i))
        elif i > axis:
            flow.link((data, i), (y, i - 1 + ri))
    for k in range(ri):
        flow.link((indices, k), (y, axis + k))
    return flow.build()


@channel_rule("Pad")
def pad(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Axes that get no padding pass through. With constant padding, a padded axis is an offset
    map: position i of X is position `before + i` of Y, and the added positions (constants) are
    pinned, so the pad amounts never change (residual blocks that widen the identity path with
    zero channels). Reflect, edge and wrap padding copy positions of X, and negative pads crop:
    those axes are pinned."""
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    rank = ctx.rank(x)
    pads = int_list(ctx, node, "pads", 1)
    if rank is None or pads is None:
        flow.pin_tensor(x, "Pad amounts are computed at run time")
        return flow.build()
    axes = int_list(ctx, node, "axes_", 3) if opt_input(node, 3) else list(range(rank))
    axes = [norm_axis(a, rank) for a in (axes or [])]
    amounts = {
        a: (pads[k], pads[k + len(axes)]) for k, a in enumerate(axes) if pads[k] or pads[k + len(axes)]
    }
    link_same_axes(flow, ctx, x, y, skip=set(amounts))
    mode = ctx.attr(node, "mode", "constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return flow.build()
    for axis, (before, after) in amounts.items():
        size = ctx.size((x, axis))
        if size is None or before < 0 or after < 0:
            continue
        flow.link((x, axis), (y, axis), IndexMap.at_offset(before))
        added = (*range(before), *range(before + size, before + size + after))
        constants = flow.virtual_dim(f"{y}::pad_constants_{axis}", len(added))
        flow.link(constants, (y, axis), IndexMap.gather(added))
        flow.pin(constants, f"Pad adds {before} + {after} constant positions on axis {axis}: they stay")
    return flow.build()


@channel_rule("Resize", counts=(3,))
@channel_rule("Upsample")
def resize(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Axes whose size does not change (batch, channels) pass through; constant `sizes` are
    rewritten, and a run-time `sizes` entry must copy a dim (`Concat(Shape(x)[:2], hw)`, as
    torch's `interpolate(size=...)` exports) for its axis to pass.

    Axes left out of Resize's `axes` attribute are not resized at all. An axis whose size
    stays is still resampled when its scale is not 1 (4 channels at scale 1.2 are 4 channels
    again, the last two copies of one) or, with the tf_crop_and_resize transformation, when
    its crop box is not the whole axis: such an axis passes only when the (constant) scale
    is 1 and the (constant) box is [0, 1].
    """
    flow = FlowBuilder()
    x, y = node.input[0], node.output[0]
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    if x_shape is None or y_shape is None or len(x_shape) != len(y_shape):
        return flow.build()
    rank = len(x_shape)
    listed = ctx.attr(node, "axes") if node.op_type == "Resize" else None
    resized = list(range(rank)) if listed is None else [norm_axis(int(a), rank) for a in listed]
    whole = set(resized)
    scales = _resize_scales(node, ctx)
    if scales is None:
        whole = set()
    elif scales:
        ones = {a for a, s in zip(resized, scales, strict=False) if s == 1}
        whole &= ones if len(scales) == len(resized) else set()
    if ctx.attr(node, "coordinate_transformation_mode") in ("tf_crop_and_resize", b"tf_crop_and_resize"):
        roi = ctx.small_const(opt_input(node, 1) or "")
        box = None if roi is None else roi.reshape(-1).tolist()
        n = len(resized)
        cropped = box is None or len(box) != 2 * n
        whole &= set() if cropped else {a for k, a in enumerate(resized) if box[k] == 0 and box[n + k] == 1}
    sizes = opt_input(node, 3) if node.op_type == "Resize" else None
    copied: dict[int, object] | None = None  # run-time sizes: each resized axis's entry
    if sizes is not None and ctx.small_const(sizes) is None:
        entries = ctx.shape_entries(sizes)
        copied = dict(zip(resized, entries, strict=True)) if entries and len(entries) == len(resized) else {}
    for axis, (a, b) in enumerate(zip(x_shape, y_shape, strict=True)):
        if axis in resized and axis not in whole:
            continue
        if a == b and (isinstance(a, int) or axis == 0):
            if copied is not None and axis in resized:
                # a run-time size follows the pruning only when it copies a dim (Shape(x)[1]),
                # which it is then linked to; any other size cannot be rewritten: the axis stays
                entry = copied.get(axis)
                if not isinstance(entry, tuple):
                    continue
                flow.link((y, axis), entry)
            flow.link((x, axis), (y, axis))
    return flow.build()


def _resize_scales(node: onnx.NodeProto, ctx: RuleContext) -> list[float] | None:
    """The scales of a Resize or Upsample: [] when none are given (sizes decide), None when
    they are computed at run time."""
    given = ctx.attr(node, "scales") if node.op_type == "Upsample" else None
    if given is not None:
        return [float(v) for v in given]
    name = opt_input(node, 1 if node.op_type == "Upsample" or ctx.opset < 11 else 2)
    if name is None:
        return []
    const = ctx.small_const(name)
    return None if const is None else [float(v) for v in const.reshape(-1)]
