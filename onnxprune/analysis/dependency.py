"""The dependency analyzer: coupling groups of channels and the barriers that pin them.

Each op rule (`rules`, looked up in `registry`) says how channels flow through a node: links
between channel axes `(tensor, axis)`, each carrying an index map, and the axes it pins. The
axes and links form a networkx graph (`coupling`); its connected components are resolved into
units and groups (`units`): positions the index maps join are removed together, everywhere they
appear, and units that touch the same axes in the same way form a group, the ratio applying per
group. A unit touching a pinned axis cannot be removed. The results are immutable (`groups`).

>>> analysis = analyze_model(model)  # doctest: +SKIP
>>> [g.size for g in analysis.groups if g.prunable]  # doctest: +SKIP
[16, 32]
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx
import onnx

from onnxprune.analysis.coupling import add_links, coupling_components, coupling_graph, extended
from onnxprune.analysis.flow import ChannelFlow, Dim, Link, RuleContext
from onnxprune.analysis.groups import (
    Barrier,
    DependencyAnalysis,
    Group,
    Member,
    dedupe_barriers,
    pins_of,
)
from onnxprune.analysis.units import batch_groups, component_groups
from onnxprune.graph import FLOAT_TYPES, subgraph_reads
from onnxprune.optable import OpTable, default_op_table

__all__ = ["Barrier", "DependencyAnalysis", "Group", "Member", "analyze_model"]

_new_barrier = tuple.__new__  # Barrier(...) without the named tuple's argument handling (a hot loop)


@dataclass
class _Collected:
    """Everything the rules said about the graph, before channels are resolved into groups."""

    links: list[Link] = field(default_factory=list)
    pins: dict[Dim, list[Barrier]] = field(default_factory=lambda: defaultdict(list))
    roles: dict[Dim, str] = field(default_factory=dict)
    virtual: dict[str, int] = field(default_factory=dict)
    choices: list[tuple[str, str, tuple[tuple[Link, ...], ...]]] = field(default_factory=list)
    divisors: set[str] = field(default_factory=set)


def analyze_model(
    model: onnx.ModelProto,
    *,
    exclude: str | None = None,
    ctx: RuleContext | None = None,
    table: OpTable | None = None,
) -> DependencyAnalysis:
    """Analyse a normalized model (initializers for constants, shapes inferred) with the channel
    rules of `table` (default: `default_op_table()`).

    Where a rule offers alternatives (which factor of a merged or split axis carries the
    channels), each is tried in turn, keeping the one that leaves the most weights prunable.
    `ctx` is the rule context of `model` when the caller made one (to reuse it after).
    """
    ctx = RuleContext(model) if ctx is None else ctx
    excluded = re.compile(exclude) if exclude else None
    collected = _collect(model, ctx, excluded, table)
    weights = {  # float weights make a group worth reporting; int constants are shape arithmetic
        t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer if t.data_type in FLOAT_TYPES
    }
    state = [0] * len(collected.choices)
    cache: dict = {}
    graph = coupling_graph(collected.links)  # each trial adds its alternatives' links, then removes them

    def score(trial: list[int]) -> int:
        with extended(graph, _chosen_links(collected, trial)):
            return _prunable_params(_resolve(collected, trial, ctx, weights, graph, cache)[0], weights)

    best = score(state) if collected.choices else 0
    for i, (_, _, alternatives) in enumerate(collected.choices):
        for alt in range(1, len(alternatives)):
            trial = [*state[:i], alt, *state[i + 1 :]]
            if (found := score(trial)) > best:
                state, best = trial, found
    for cluster in _joined_choices(collected, graph):  # choices that only help together
        for alt in range(1, max(len(collected.choices[i][2]) for i in cluster)):
            trial = list(state)
            for i in cluster:
                trial[i] = alt if alt < len(collected.choices[i][2]) else trial[i]
            if (found := score(trial)) > best:
                state, best = trial, found
    add_links(graph, _chosen_links(collected, state))
    groups, shared, dim_sizes, links = _resolve(collected, state, ctx, weights, graph)
    barriers = dedupe_barriers(b for g in groups if not g.prunable for b in g.barriers)
    return DependencyAnalysis(
        groups=tuple(groups),
        barriers=tuple(barriers),
        links=tuple(links),
        dim_sizes=dim_sizes,
        shared_positions=shared,
        graph=nx.freeze(graph),
    )


def _collect(
    model: onnx.ModelProto, ctx: RuleContext, excluded: re.Pattern | None, table: OpTable | None = None
) -> _Collected:
    table = table or default_op_table()
    out = _Collected()
    pins = out.pins

    def pin(dim: Dim, barrier: Barrier) -> None:
        pins[dim].append(barrier)

    for index, node in enumerate(model.graph.node):
        op_type = node.op_type
        name = node.name or f"{op_type}_{index}"
        entry = table.lookup(node.domain, op_type, ctx.opset_of(node.domain))
        rule = entry.rule if entry is not None else None
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
            for tensor in sorted(subgraph_reads(node)):
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
    graph: nx.Graph | None = None,
    cache: dict | None = None,
):
    """Groups for one selection of alternatives; returns (groups, shared positions, dim sizes,
    links), see DependencyAnalysis. `graph` is the dependency graph of those links, the
    collected ones then the chosen alternatives' (built from them when not given).

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
    for dims in coupling_components(coupling_graph(links) if graph is None else graph):
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
        pinned = frozenset(d for d in dims if pins_of(d, pins))
        key = (frozenset(map(id, comp_links)), pinned)
        if key not in cache:
            cache[key] = component_groups(dims, dim_sizes, comp_links, weights, collected.roles, pins, 0)
        groups.extend(cache[key][0])
        shared.update(cache[key][1])
    if batch:
        groups, shared = batch_groups(batch, dim_sizes, weights, collected.roles, pins)
    return groups, shared, dim_sizes, links


def _joined_choices(collected: _Collected, graph: nx.Graph) -> list[list[int]]:
    """Clusters of two or more choices whose alternatives touch a common coupling component:
    one may pin what another frees (a recurrent layer's hidden units merged with its
    directions by one Reshape for Y and another for Y_h), so flipping one alone gains nothing.
    Tried after the single flips, each cluster as a whole."""
    component_of = {d: k for k, dims in enumerate(coupling_components(graph)) for d in dims}
    owners: dict[object, list[int]] = defaultdict(list)
    for i, (_, _, alternatives) in enumerate(collected.choices):
        touched = {component_of.get(d, d) for alt in alternatives for link in alt for d in (link.a, link.b)}
        for key in touched:
            owners[key].append(i)
    parent = list(range(len(collected.choices)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in owners.values():
        for i in members[1:]:
            parent[root(i)] = root(members[0])
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(collected.choices)):
        clusters[root(i)].append(i)
    return [c for c in clusters.values() if len(c) > 1]


def _chosen_links(collected: _Collected, state: list[int]) -> list[Link]:
    """The links of the alternatives `state` chooses, in the order of the choices."""
    chosen = zip(collected.choices, state, strict=True)
    return [link for (_, _, alternatives), alt in chosen for link in alternatives[alt]]


def _prunable_params(groups: list[Group], weights: dict[str, tuple[int, ...]]) -> int:
    """How many weight parameters the prunable groups can remove (how alternatives are judged)."""
    total = 0
    for g in groups:
        if g.prunable:
            for m in g.weight_members:
                shape = weights[m.tensor]
                total += m.positions.size * math.prod(shape) // max(1, shape[m.axis])
    return total


_NO_FLOW = ChannelFlow()  # a node without a rule maps nothing: every axis it touches is pinned
