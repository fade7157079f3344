"""What the dependency analysis finds: coupling groups of channels, their members, and the
barriers that pin them (immutable results; `dependency.analyze_model` builds them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import networkx as nx
import numpy as np

from onnxprune.analysis.flow import Dim, Link


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
    graph: nx.Graph = field(default_factory=nx.Graph, repr=False)
    """The channel-axis dependency graph the groups were resolved from: its nodes are the axes
    `(tensor, axis)` that `links` join, an edge joins two axes some link joins (parallel links are
    one edge; `links` keeps each with its index map), and its connected components, in networkx's
    order, are the components the groups were split from (frozen: `nx.freeze`)."""

    @property
    def prunable_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.prunable)

    @property
    def pinned_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if not g.prunable)


def dedupe_barriers(barriers: Iterable[Barrier]) -> list[Barrier]:
    """`barriers` without repeats of one (node, op type, reason), first occurrences in order."""
    seen, out = set(), []
    for b in barriers:
        key = (b.node, b.op_type, b.reason)
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out


def pins_of(dim: Dim, pins: dict[Dim, list[Barrier]]) -> list[Barrier]:
    """The barriers on axis `dim`: its own and those on every axis of its tensor (axis -1)."""
    return [*pins.get(dim, ()), *pins.get((dim[0], -1), ())]
