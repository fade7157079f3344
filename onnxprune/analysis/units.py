"""Units and groups inside coupling components: which channel positions are removed together.

Inside a component of the dependency graph (`coupling`), the positions of its axes that the
links' index maps join are merged (a union-find over elements); a merged set is a *unit*:
channels (or whole blocks of channels: heads, features of a flattened channel) removed
together, everywhere they appear. Units that occupy the same axes in the same way form a
*group*; the ratio applies per group. A unit touching a pinned axis cannot be removed.
"""

from __future__ import annotations

import numpy as np

from onnxprune.analysis.flow import Dim, Link
from onnxprune.analysis.groups import Barrier, Group, Member, dedupe_barriers, pins_of
from onnxprune.analysis.index_map import OFFSET_KINDS, offset_pairs


def batch_groups(components, sizes, weights, roles, pins) -> tuple[list[Group], dict[Dim, Dim]]:
    """The groups of several components, in component order, from one pass over all their
    positions (components share no axis, so no unit spans two of them); when some component's
    index maps disagree, each is resolved on its own and that one alone is pinned."""
    dims = [d for component, _ in components for d in component]
    links = [lk for _, component_links in components for lk in component_links]
    try:
        return component_groups(dims, sizes, links, weights, roles, pins, 0, strict=True)
    except ValueError:
        groups: list[Group] = []
        shared: dict[Dim, Dim] = {}
        for component, component_links in components:
            first_id = len(groups)
            found, same = component_groups(component, sizes, component_links, weights, roles, pins, first_id)
            groups += found
            shared.update(same)
        return groups, shared


def component_groups(
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
        labels, offsets = merge_elements(reps, sizes, rep_links)
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


def merge_elements(dims: list[Dim], sizes: dict[Dim, int], links: list[Link]):
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
    dims = list(aliases)
    dim_of = np.repeat(np.arange(len(dims)), [sizes[d] for d in dims])  # each position's axis
    weight_dims = np.array([any(a[0] in weights for a in aliases[d]) for d in dims])
    kept = [units for units, sig in _signatures(labels, dim_of, len(dims)) if weight_dims[sig[:, 0]].any()]
    if not kept:
        return []
    run_k, run_g, positions_of_run = _position_runs(labels, dim_of, kept, [offsets[d] for d in dims])
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
    pinned_axes = {i: why for i, d in enumerate(component) if (why := pins_of(d, pins))}
    groups = []
    for g, units in enumerate(kept):
        low, high = bounds[g], bounds[g + 1]
        found = [pinned_axes[i] for i in member_axis[low:high].tolist() if i in pinned_axes]
        barriers = dedupe_barriers(b for why in found for b in why)
        groups.append(Group(first_id + g, len(units), tuple(members[low:high]), not found, tuple(barriers)))
    return groups


def _signatures(labels: np.ndarray, dim_of: np.ndarray, ndims: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The units of each signature, as (its units, its (axis, positions in it) pairs), in the
    order their first unit appears.

    A unit's label is the smallest position index it occupies (see merge_elements), so labels
    order units by where they first appear. Its signature is the (axis, positions in it) pairs it
    occupies, in axis order; units of one signature form a group.
    """
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
    return [(units, sig) for _, units, sig in signatures]


def _position_runs(
    labels: np.ndarray, dim_of: np.ndarray, kept: list[np.ndarray], offsets: list[int]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The positions of the groups' units in each axis: one run per (axis, group) that has any,
    ordered by axis then group, as (axis of each run, group of each run, positions of each run:
    one row per unit of the group, in the axis's own indices, read-only)."""
    # every position's (group, rank of its unit in the group); positions of other units get -1
    group_of_unit = np.full(len(labels), -1)
    rank_of_unit = np.zeros(len(labels), dtype=np.int64)
    for g, units in enumerate(kept):
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
    local = where - np.asarray(offsets)[k_at]
    run_starts = _run_starts(k_at * len(kept) + g_at)
    run_ends = np.append(run_starts[1:], len(where)).tolist()
    run_k, run_g = k_at[run_starts], g_at[run_starts]
    positions_of_run = []
    for low, high, g in zip(run_starts.tolist(), run_ends, run_g.tolist(), strict=True):
        positions = local[low:high].reshape(len(kept[g]), -1)
        positions.flags.writeable = False  # shared by the axes of one identity class
        positions_of_run.append(positions)
    return run_k, run_g, positions_of_run


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
