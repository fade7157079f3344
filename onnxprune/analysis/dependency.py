"""The dependency analyzer: coupling groups of channels and the barriers that pin them.

Nodes of a networkx graph are channel axes `(tensor, axis)`; each op rule adds edges
carrying an index map. Inside each connected component, positions joined by the maps
are merged (union-find over elements); a merged set is a *unit*: channels (or whole
blocks of channels: heads, features of a flattened channel) that are removed together,
everywhere they appear. Units that touch the same axes in the same way form a *group*;
the ratio applies per group. A unit touching a pinned axis cannot be removed.

>>> analysis = analyze_model(model)  # doctest: +SKIP
>>> [g.size for g in analysis.groups if g.prunable]  # doctest: +SKIP
[16, 32]
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import networkx as nx
import numpy as np
import onnx

from onnxprune.analysis import rules  # noqa: F401  (registers every op rule)
from onnxprune.analysis.flow import ChannelFlow, Dim, Link, RuleContext
from onnxprune.analysis.index_map import OFFSET_KINDS, offset_pairs
from onnxprune.analysis.registry import lookup
from onnxprune.io import attribute_graphs


class Barrier(NamedTuple):
    """Why channels of `tensor` (axis `axis`, or every axis when -1) cannot be removed (a named
    tuple: the analysis records one for every axis no rule maps)."""

    node: str
    op_type: str
    tensor: str
    axis: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.tensor}:{self.axis}" if self.axis >= 0 else self.tensor
        return f"node '{self.node}' ({self.op_type}) pins {where}: {self.reason}"


_new_barrier = tuple.__new__  # Barrier(...) without the named tuple's argument handling (a hot loop)


class Member(NamedTuple):
    """Where a group's units sit in one axis: `positions[k]` are the indices of unit k.

    A named tuple (an analysis makes thousands) compared by identity, like the other results:
    two members are equal only if they are the same object.
    """

    tensor: str
    axis: int
    size: int
    positions: np.ndarray
    is_weight: bool
    role: str

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__

    @property
    def key(self) -> str:
        return f"{self.tensor}:{self.axis}"


@dataclass(frozen=True, eq=False)
class Group:
    """A coupling group: `size` units that share one structure; each is kept or removed whole."""

    id: int
    size: int
    members: tuple[Member, ...]
    prunable: bool
    barriers: tuple[Barrier, ...] = ()

    @cached_property
    def weight_members(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.is_weight)

    @property
    def kind(self) -> str:
        """'heads' when every weight sees a unit as a block of channels (attention heads), else
        'channels' (a unit is one channel in at least one weight: filters, neurons)."""
        blocks = [m.positions.shape[1] for m in self.weight_members]
        return "heads" if blocks and min(blocks) > 1 else "channels"

    def describe(self) -> str:
        head = ", ".join(m.key for m in self.weight_members[:3])
        more = len(self.weight_members) - 3
        return head + (f" (+{more} more)" if more > 0 else "")


@dataclass(frozen=True, eq=False)
class DependencyAnalysis:
    """Immutable result of analysing one (normalized) model."""

    groups: tuple[Group, ...]
    barriers: tuple[Barrier, ...]
    links: tuple[Link, ...] = field(repr=False)
    dim_sizes: dict[Dim, int] = field(repr=False)
    shared_positions: dict[Dim, Dim] = field(default_factory=dict, repr=False)
    """Axis -> the first axis of its identity class (an activation, the BatchNorm parameters
    and the conv input axis it feeds): both sit in the same groups with the same positions
    (the same array), so whatever is kept of one is kept of the other."""

    @cached_property
    def graph(self) -> nx.Graph:
        """The networkx graph of channel axes: one edge per link (built when first asked for);
        its connected components are the components the groups were split from."""
        graph = nx.Graph()
        graph.add_edges_from((link.a, link.b) for link in self.links)
        graph.graph["links"] = list(self.links)
        return graph

    @property
    def prunable_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.prunable)

    @property
    def pinned_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if not g.prunable)


@dataclass
class _Collected:
    """Everything the rules said about the graph, before channels are resolved into groups."""

    links: list[Link] = field(default_factory=list)
    pins: dict[Dim, list[Barrier]] = field(default_factory=lambda: defaultdict(list))
    roles: dict[Dim, str] = field(default_factory=dict)
    virtual: dict[str, int] = field(default_factory=dict)
    choices: list[tuple[str, str, tuple[tuple[Link, ...], ...]]] = field(default_factory=list)
    divisors: set[str] = field(default_factory=set)


def analyze_model(model: onnx.ModelProto, *, exclude: str | None = None) -> DependencyAnalysis:
    """Analyse a normalized model (initializers for constants, shapes inferred).

    Where a rule offers alternatives (which factor of a merged or split axis carries the
    channels), each is tried in turn, keeping the one that leaves the most weights prunable.
    """
    ctx = RuleContext(model)
    collected = _collect(model, ctx, re.compile(exclude) if exclude else None)
    float_types = (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.BFLOAT16,
    )
    weights = {  # float weights make a group worth reporting; int constants are shape arithmetic
        t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer if t.data_type in float_types
    }
    state = [0] * len(collected.choices)
    cache: dict = {}

    def score(trial: list[int]) -> int:
        return _prunable_params(_resolve(collected, trial, ctx, weights, cache)[0], weights)

    best = score(state) if collected.choices else 0
    for i, (_, _, alternatives) in enumerate(collected.choices):
        for alt in range(1, len(alternatives)):
            trial = [*state[:i], alt, *state[i + 1 :]]
            if (found := score(trial)) > best:
                state, best = trial, found
    groups, shared, dim_sizes, links = _resolve(collected, state, ctx, weights)
    barriers = _dedupe(b for g in groups if not g.prunable for b in g.barriers)
    return DependencyAnalysis(
        groups=tuple(groups),
        barriers=tuple(barriers),
        links=tuple(links),
        dim_sizes=dim_sizes,
        shared_positions=shared,
    )


def _collect(model: onnx.ModelProto, ctx: RuleContext, excluded: re.Pattern | None) -> _Collected:
    out = _Collected()
    pins = out.pins

    def pin(dim: Dim, barrier: Barrier) -> None:
        pins[dim].append(barrier)

    for index, node in enumerate(model.graph.node):
        op_type = node.op_type
        name = node.name or f"{op_type}_{index}"
        rule = lookup(node.domain, op_type)
        flow = rule(node, ctx) if rule is not None else _NO_FLOW
        touched = {link.a for link in flow.links}
        touched.update(link.b for link in flow.links)
        touched.update(flow.free)
        for alts in flow.choices:
            touched.update(d for alt in alts for link in alt for d in (link.a, link.b))
        for p in flow.pins:
            pin(p.dim, Barrier(name, op_type, p.dim[0], p.dim[1], p.reason))
            touched.add(p.dim)
        if node.attribute:
            for tensor in sorted(_outer_scope_reads(node)):
                why = f"read inside a subgraph of {op_type}: the body expects its current shape"
                pin((tensor, -1), Barrier(name, op_type, tensor, -1, why))
        reason = None
        if excluded is not None and excluded.search(name):
            reason = "excluded by --exclude"
        elif rule is None:
            reason = f"no channel rule for {node.domain + '::' if node.domain else ''}{op_type}"
        for tensor in [*node.input, *node.output]:
            if not tensor:
                continue
            shape = ctx.shape(tensor)
            if shape is None:
                if reason or not any(d[0] == tensor for d in touched):
                    why = reason or "shape unknown to the analyzer"
                    pin((tensor, -1), Barrier(name, op_type, tensor, -1, why))
                continue
            for axis, size in enumerate(shape):
                if reason:
                    pins[tensor, axis].append(_new_barrier(Barrier, (name, op_type, tensor, axis, reason)))
                elif size != 1 and (tensor, axis) not in touched:
                    why = f"{op_type} does not map axis {axis} of '{tensor}'"
                    pins[tensor, axis].append(_new_barrier(Barrier, (name, op_type, tensor, axis, why)))
        out.links.extend(flow.links)  # an excluded node's weights join (pinned) groups with the reason
        out.choices.extend((name, op_type, alts) for alts in flow.choices)
        for dim, role in flow.roles:  # a weight axis any reader contracts is an "in" axis
            if role == "in" or dim not in out.roles:
                out.roles[dim] = role
        if op_type == "Div" and len(node.input) > 1 and ctx.is_weight(node.input[1]):
            out.divisors.add(node.input[1])
        out.virtual.update(dict(flow.virtual_sizes))

    for dim, role in out.roles.items():  # masking zeroes "in" entries: never those of a divisor
        if role == "in" and dim[0] in out.divisors:
            why = f"weight '{dim[0]}' is also a divisor: zeroing removed channels would divide by zero"
            pin(dim, Barrier("<analysis>", "Div", dim[0], dim[1], why))
    for vi in model.graph.input:
        for axis in range(len(ctx.shape(vi.name) or ())):
            pin((vi.name, axis), Barrier("<graph>", "input", vi.name, axis, f"graph input '{vi.name}'"))
    for vi in model.graph.output:
        shape = ctx.shape(vi.name)
        axes = range(len(shape)) if shape is not None else [-1]
        for axis in axes:
            pin((vi.name, axis), Barrier("<graph>", "output", vi.name, axis, f"graph output '{vi.name}'"))
    return out


def _resolve(
    collected: _Collected,
    state: list[int],
    ctx: RuleContext,
    weights: dict[str, tuple[int, ...]],
    cache: dict | None = None,
):
    """Groups for one selection of alternatives; returns (groups, shared positions, dim sizes,
    links), see DependencyAnalysis.

    Without a `cache`, every component is resolved in one pass over all their positions. With
    one (to score alternatives), each component is resolved on its own and the groups of a
    component seen before (same links, same pinned axes) are reused, so trying an alternative
    only re-resolves the components it changes; those groups are numbered from 0 in each
    component and their barrier texts may be stale, so the final resolution runs without one.
    """
    links = list(collected.links)
    pins: dict[Dim, list[Barrier]] = dict(collected.pins)  # lists replaced, never appended to
    for (node, op_type, alternatives), chosen in zip(collected.choices, state, strict=True):
        links.extend(alternatives[chosen])
        used = {d for link in alternatives[chosen] for d in (link.a, link.b)}
        for alt in alternatives:
            for d in {d for link in alt for d in (link.a, link.b)} - used:
                why = f"{op_type} keeps axis {d[1]} of '{d[0]}' whole (another factor carries channels)"
                pins[d] = [*pins.get(d, ()), Barrier(node, op_type, d[0], d[1], why)]
    by_dim: dict[Dim, list[Link]] = defaultdict(list)
    for link in links:
        by_dim[link.a].append(link)

    def size_of(dim: Dim) -> int | None:
        if dim[0] in collected.virtual:
            return collected.virtual[dim[0]]
        return ctx.size(dim)

    groups: list[Group] = []
    shared: dict[Dim, Dim] = {}
    dim_sizes: dict[Dim, int] = {}
    batch: list[tuple[list[Dim], list[Link]]] = []  # without a cache: every component in one pass
    for component in _connected_components(links):
        dims = sorted(component)
        if not any(d[0] in weights for d in dims):
            continue
        sizes = {d: size_of(d) for d in dims}
        if any(s is None for s in sizes.values()):
            continue  # dynamic axes: nothing to slice
        dim_sizes.update(sizes)
        comp_links = [lk for d in dims for lk in by_dim.get(d, [])]
        if cache is None:
            batch.append((dims, comp_links))
            continue
        pinned = frozenset(d for d in dims if _is_pinned(d, pins))
        key = (frozenset(map(id, comp_links)), pinned)
        if key not in cache:
            cache[key] = _component_groups(dims, dim_sizes, comp_links, weights, collected.roles, pins, 0)
        groups.extend(cache[key][0])
        shared.update(cache[key][1])
    if batch:
        groups, shared = _batch_groups(batch, dim_sizes, weights, collected.roles, pins)
    return groups, shared, dim_sizes, links


def _prunable_params(groups: list[Group], weights: dict[str, tuple[int, ...]]) -> int:
    """How many weight parameters the prunable groups can remove (how alternatives are judged)."""
    total = 0
    for g in groups:
        if g.prunable:
            for m in g.weight_members:
                shape = weights[m.tensor]
                total += m.positions.size * math.prod(shape) // max(1, shape[m.axis])
    return total


def _connected_components(links: list[Link]) -> list[list[Dim]]:
    """The connected components of the graph `DependencyAnalysis.graph` builds from `links`, in
    the order networkx lists them (by the first axis each one has in link order)."""
    if not links:
        return []
    a_ends = [lk.a for lk in links]
    b_ends = [lk.b for lk in links]
    # an axis's number: the order it first appears in, reading each link's two ends in turn
    dims = list(dict.fromkeys(d for pair in zip(a_ends, b_ends, strict=True) for d in pair))
    number = {d: i for i, d in enumerate(dims)}
    labels = _min_labels(
        len(dims),
        np.fromiter(map(number.__getitem__, a_ends), dtype=np.int64, count=len(links)),
        np.fromiter(map(number.__getitem__, b_ends), dtype=np.int64, count=len(links)),
    )
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [[dims[i] for i in part] for part in np.split(order, cuts)]


def _batch_groups(components, sizes, weights, roles, pins) -> tuple[list[Group], dict[Dim, Dim]]:
    """The groups of several components, in component order, from one pass over all their
    positions (components share no axis, so no unit spans two of them); when some component's
    index maps disagree, each is resolved on its own and that one alone is pinned."""
    dims = [d for component, _ in components for d in component]
    links = [lk for _, component_links in components for lk in component_links]
    try:
        return _component_groups(dims, sizes, links, weights, roles, pins, 0, strict=True)
    except ValueError:
        groups: list[Group] = []
        shared: dict[Dim, Dim] = {}
        for component, component_links in components:
            first_id = len(groups)
            found, same = _component_groups(component, sizes, component_links, weights, roles, pins, first_id)
            groups += found
            shared.update(same)
        return groups, shared


def _component_groups(
    dims, sizes, links, weights, roles, pins, first_id, strict=False
) -> tuple[list[Group], dict[Dim, Dim]]:
    """The groups of the axes `dims` (sorted within each component) joined by `links`, and the
    axes that share another's positions (DependencyAnalysis.shared_positions); with `strict`,
    index maps that disagree raise ValueError instead of pinning the component."""
    # Axes joined by identity maps (an activation, the BatchNorm parameters and the conv weight
    # axis that all see the same channels) hold the same units at the same positions: elements
    # are merged over one axis per such class, and every axis of the class shares its members.
    aliases = _identity_classes(dims, sizes, links)
    reps = list(aliases)
    rep_of = {d: rep for rep, same in aliases.items() for d in same}
    rep_links = [
        Link(rep_of[lk.a], rep_of[lk.b], lk.index_map)
        for lk in links
        if not (lk.index_map.kind == "identity" and rep_of[lk.a] == rep_of[lk.b])
    ]
    try:
        labels, offsets = _merge_elements(reps, sizes, rep_links)
    except ValueError as exc:
        if strict:
            raise
        bad = Barrier("<analysis>", "index map", dims[0][0], dims[0][1], f"inconsistent sizes: {exc}")
        return _unresolved_group(dims, sizes, weights, roles, bad, first_id), {}
    shared = {d: first for first, same in aliases.items() for d in same[1:]}
    return _groups_of(dims, aliases, sizes, labels, offsets, weights, roles, pins, first_id), shared


def _identity_classes(dims: list[Dim], sizes: dict[Dim, int], links: list[Link]) -> dict[Dim, list[Dim]]:
    """Classes of axes joined by identity maps between equal sizes, as {first axis: its axes},
    both in `dims` order (an identity map between unequal sizes is left to fail in the merge)."""
    index = {d: i for i, d in enumerate(dims)}
    pairs = [
        (index[lk.a], index[lk.b])
        for lk in links
        if lk.index_map.kind == "identity" and sizes[lk.a] == sizes[lk.b]
    ]
    ends = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    labels = _min_labels(len(dims), ends[:, 0], ends[:, 1]).tolist()  # a class's first axis
    classes: dict[Dim, list[Dim]] = {}
    for d, label in zip(dims, labels, strict=True):
        classes.setdefault(dims[label], []).append(d)
    return classes


def _outer_scope_reads(node: onnx.NodeProto) -> set[str]:
    """Tensors an If/Loop/Scan body reads from the enclosing graph without listing them as inputs."""
    names: set[str] = set()
    for attr in node.attribute:
        for g in attribute_graphs(attr):
            local = {vi.name for vi in g.input} | {t.name for t in g.initializer}
            local |= {o for n in g.node for o in n.output}
            for inner in g.node:
                names |= {i for i in inner.input if i and i not in local}
                names |= _outer_scope_reads(inner) - local
    return names


_NO_FLOW = ChannelFlow()  # a node without a rule maps nothing: every axis it touches is pinned


def _is_pinned(dim: Dim, pins: dict[Dim, list[Barrier]]) -> list[Barrier]:
    return [*pins.get(dim, ()), *pins.get((dim[0], -1), ())]


def _merge_elements(dims: list[Dim], sizes: dict[Dim, int], links: list[Link]):
    """Union-find over all positions of the component's axes; returns root labels and offsets."""
    offsets: dict[Dim, int] = {}
    total = 0
    for d in dims:
        offsets[d] = total
        total += sizes[d]
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    # offset maps (Concat, Split, Slice) and identities between axes of different classes are
    # most links: their pairs are written for all of them at once
    plain = [lk for lk in links if lk.index_map.kind in OFFSET_KINDS]
    if plain:
        ia, ib, link_of = offset_pairs(
            [lk.index_map for lk in plain], [sizes[lk.a] for lk in plain], [sizes[lk.b] for lk in plain]
        )
        shift_a = np.array([offsets[lk.a] for lk in plain], dtype=np.int64)
        shift_b = np.array([offsets[lk.b] for lk in plain], dtype=np.int64)
        pairs.append((ia + shift_a[link_of], ib + shift_b[link_of]))
    for link in links:
        if link.index_map.kind not in OFFSET_KINDS:
            ia, ib = link.index_map.pairs(sizes[link.a], sizes[link.b])
            pairs.append((ia + offsets[link.a], ib + offsets[link.b]))
    if not pairs:
        return np.arange(total), offsets
    u = np.concatenate([pair[0] for pair in pairs])
    v = np.concatenate([pair[1] for pair in pairs])
    return _min_labels(total, u, v), offsets


def _min_labels(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Union-find over elements 0..n-1 joined by the pairs (u[i], v[i]): each element's label is
    the smallest element of its class (vectorized: propagate minima, then jump pointers)."""
    labels = np.arange(n)
    while True:
        lu, lv = labels[u], labels[v]
        if np.array_equal(lu, lv):
            return labels
        low = np.minimum(lu, lv)
        np.minimum.at(labels, lu, low)
        np.minimum.at(labels, lv, low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def _unresolved_group(dims, sizes, weights, roles, barrier: Barrier, first_id) -> list[Group]:
    """One pinned group naming the component's weights, for a component whose maps disagree."""
    members = tuple(
        Member(d[0], d[1], sizes[d] or 0, np.zeros((0, 0), np.int64), d[0] in weights, roles.get(d, "out"))
        for d in dims
        if d[0] in weights
    )
    return [Group(first_id, 0, members, False, (barrier,))]


def _groups_of(component, aliases, sizes, labels, offsets, weights, roles, pins, first_id) -> list[Group]:
    """Split a component's units into groups of equal structure. `component` is its axes, sorted;
    `aliases` maps each axis that carries the labelled positions to the axes that share them
    (itself first)."""
    # A unit's label is the smallest position index it occupies (see _merge_elements), so labels
    # order units by where they first appear. Its signature is the (axis, positions in it) pairs it
    # occupies, in axis order; units of one signature form a group.
    dims = list(aliases)
    ndims = len(dims)
    dim_of = np.repeat(np.arange(ndims), [sizes[d] for d in dims])
    pair_key, counts = _runs(np.sort(labels * ndims + dim_of, kind="stable"))  # long sorted runs: fast
    unit_of_pair, dim_of_pair = np.divmod(pair_key, ndims)
    starts = _run_starts(unit_of_pair)  # each unit's first pair
    widths = np.diff(np.append(starts, len(pair_key)))
    pairs = np.stack([dim_of_pair, counts], axis=1)
    signatures: list[tuple[int, np.ndarray, np.ndarray]] = []  # (first unit, its units, its pairs)
    for width in np.unique(widths).tolist():  # units with as many pairs: compare rows at once
        units = np.flatnonzero(widths == width)
        rows = pairs[starts[units][:, None] + np.arange(width)].reshape(len(units), -1)
        first, inverse = _same_rows(rows)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(inverse, minlength=len(first)))))
        for j in range(len(first)):
            same = units[order[bounds[j] : bounds[j + 1]]]
            signatures.append((int(same[0]), unit_of_pair[starts[same]], rows[first[j]].reshape(-1, 2)))
    signatures.sort(key=lambda item: item[0])  # groups in the order their first unit appears
    weight_dims = np.array([any(a[0] in weights for a in aliases[d]) for d in dims])
    kept = [(units, sig) for _, units, sig in signatures if weight_dims[sig[:, 0]].any()]
    if not kept:
        return []
    # every position's (group, rank of its unit in the group); positions of other units get -1
    group_of_unit = np.full(len(labels), -1)
    rank_of_unit = np.zeros(len(labels), dtype=np.int64)
    for g, (units, _) in enumerate(kept):
        group_of_unit[units] = g
        rank_of_unit[units] = np.arange(len(units))
    group_at = group_of_unit[labels]
    # one sort of every grouped position by (axis, group, unit); each run of one (axis, group) is
    # a member, its positions ascending within each unit
    where = np.flatnonzero(group_at >= 0)
    k_at, g_at = dim_of[where], group_at[where]
    ranks = rank_of_unit[labels[where]]
    order = np.argsort((k_at * len(kept) + g_at) * (int(ranks.max()) + 1) + ranks, kind="stable")
    where, k_at, g_at = where[order], k_at[order], g_at[order]
    local = where - np.asarray([offsets[d] for d in dims])[k_at]
    run_key = k_at * len(kept) + g_at
    run_starts = _run_starts(run_key)
    run_ends = np.append(run_starts[1:], len(where)).tolist()
    run_k, run_g = k_at[run_starts], g_at[run_starts]
    n_units = [len(units) for units, _ in kept]
    positions_of_run = []
    for low, high, g in zip(run_starts.tolist(), run_ends, run_g.tolist(), strict=True):
        positions = local[low:high].reshape(n_units[g], -1)
        positions.flags.writeable = False  # shared by the axes of one identity class
        positions_of_run.append(positions)
    # every axis of a run's class becomes a member: expand runs over their classes, then order
    # the members by group and, within a group, by axis (the component's axes are sorted)
    axis_index = {d: i for i, d in enumerate(component)}
    class_axes = [np.array([axis_index[a] for a in aliases[d]]) for d in dims]
    per_run = [class_axes[k] for k in run_k.tolist()]
    member_axis = np.concatenate(per_run)
    member_run = np.repeat(np.arange(len(per_run)), [len(a) for a in per_run])
    order = np.lexsort((member_axis, run_g[member_run]))
    member_axis, member_run = member_axis[order], member_run[order]
    member_group = run_g[member_run]
    fields = [(d[0], d[1], sizes[d], d[0] in weights, roles.get(d, "out")) for d in component]
    new_member = tuple.__new__
    members = [
        new_member(Member, (t, a, size, positions_of_run[r], is_weight, role))
        for (t, a, size, is_weight, role), r in zip(
            [fields[i] for i in member_axis.tolist()], member_run.tolist(), strict=True
        )
    ]
    bounds = np.searchsorted(member_group, np.arange(len(kept) + 1)).tolist()
    # barriers: looked up once per axis of the component; a group with none is prunable
    pinned_axes = {i: why for i, d in enumerate(component) if (why := _is_pinned(d, pins))}
    groups = []
    for g, (units, _) in enumerate(kept):
        low, high = bounds[g], bounds[g + 1]
        found = [pinned_axes[i] for i in member_axis[low:high].tolist() if i in pinned_axes]
        barriers = _dedupe(b for why in found for b in why)
        groups.append(Group(first_id + g, len(units), tuple(members[low:high]), not found, tuple(barriers)))
    return groups


def _runs(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    starts = _run_starts(ordered)
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values begins (np.r_ would cost more than the work here)."""
    return np.flatnonzero(np.concatenate(([len(values) > 0], values[1:] != values[:-1])))


_ROW_HASH = np.random.default_rng(0).integers(1, 2**62, size=4096, dtype=np.int64) | 1


def _same_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes of equal rows: the first row of each class and every row's class (np.unique's
    `return_index` and `return_inverse` over rows, through a 64-bit hash of each row that is
    checked afterwards, so a collision costs time, never correctness)."""
    width = rows.shape[1]
    if width <= len(_ROW_HASH):
        with np.errstate(over="ignore"):
            hashed = rows @ _ROW_HASH[:width]
        _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
        if np.array_equal(rows, rows[first[inverse]]):
            return first, inverse
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _dedupe(barriers) -> list[Barrier]:
    seen, out = set(), []
    for b in barriers:
        key = (b.node, b.op_type, b.reason)
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out
