"""The analyzer's core (onnxprune/analysis/dependency.py, coupling.py, units.py), beyond single op
rules: the coupling components come from the networkx graph in link order; resolving all
components in one pass gives the groups resolving each on its own gives; a component whose index
maps disagree is pinned alone; axes that share positions keep the same channels."""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import networkx as nx
import numpy as np
import onnx
import pytest

from onnxprune.analysis import coupling, dependency, units
from onnxprune.analysis.flow import Link, RuleContext
from onnxprune.analysis.index_map import IndexMap, offset_pairs
from onnxprune.importance import default_importances
from onnxprune.io import read_model
from onnxprune.passes import PassManager, normalization_passes
from onnxprune.selection import dim_keeps
from onnxprune.targets import UniformRatio

from .conftest import MODELS

PATHS = [
    MODELS / "densenet_dynamo.onnx",  # feature maps shared by many groups
    MODELS / "mobilenetv2_dynamo.onnx",  # residual adds, depthwise convs
    MODELS / "torchvision" / "shufflenet_v2_x1_0_dynamo.onnx",  # channel shuffle, splits
    MODELS / "transformers" / "bert_dynamo.onnx",  # heads: alternatives resolved with a cache
]


@cache
def normalized(path) -> onnx.ModelProto:
    model = read_model(path, lazy=True).model
    PassManager(normalization_passes()).run(model)
    return model


def described(groups) -> list[tuple]:
    """What a group is, without its id (the cached resolution numbers groups per component)."""
    return [
        (
            g.size,
            g.prunable,
            [(m.tensor, m.axis, m.size, m.is_weight, m.role, m.positions.tolist()) for m in g.members],
            [str(b) for b in g.barriers],
        )
        for g in groups
    ]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_one_pass_over_all_components_matches_one_component_at_a_time(path):
    model = normalized(path)
    ctx = RuleContext(model)
    collected = dependency._collect(model, ctx, None)
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    state = [0] * len(collected.choices)
    together, shared, _, _ = dependency._resolve(collected, state, ctx, weights)
    alone, shared_alone, _, _ = dependency._resolve(collected, state, ctx, weights, cache={})
    assert described(together) == described(alone)
    assert [g.id for g in together] == list(range(len(together)))
    assert shared == shared_alone


@pytest.mark.parametrize(
    "misfit",
    [IndexMap.blocks(3), IndexMap.at_offset(6), IndexMap.at_offset(-1), IndexMap.identity()],
    ids=["4 blocks of 3 in 8", "4 at offset 6 in 8", "4 at offset -1 in 8", "identity of 4 and 8"],
)
def test_a_component_whose_maps_disagree_is_pinned_alone(misfit):
    sizes = {("a", 1): 4, ("w", 0): 4, ("b", 1): 4, ("v", 0): 8}
    good = ([("a", 1), ("w", 0)], [Link(("a", 1), ("w", 0), IndexMap.identity())])
    bad = ([("b", 1), ("v", 0)], [Link(("b", 1), ("v", 0), misfit)])
    weights = {"w": (4, 2), "v": (8, 2)}
    groups, _ = units.batch_groups([good, bad], sizes, weights, {}, {})
    assert [(g.id, g.size, g.prunable) for g in groups] == [(0, 4, True), (1, 0, False)]
    assert [m.key for m in groups[0].members] == ["a:1", "w:0"]
    assert "inconsistent sizes" in groups[1].barriers[0].reason
    alone, _ = units.batch_groups([good], sizes, weights, {}, {})
    assert described(alone) == described(groups[:1])


def test_offset_maps_join_the_positions_they_name():
    # a Concat of 2 and 3 channels into 5, and a Slice taking every other of those 5
    sizes = {("x", 1): 2, ("y", 1): 3, ("c", 1): 5, ("s", 1): 3}
    links = [
        Link(("x", 1), ("c", 1), IndexMap.at_offset(0)),
        Link(("y", 1), ("c", 1), IndexMap.at_offset(2)),
        Link(("s", 1), ("c", 1), IndexMap.at_offset(0, step=2)),
    ]
    dims = sorted(sizes)
    labels, offsets = units.merge_elements(dims, sizes, links)
    position = {(d, i): offsets[d] + i for d in dims for i in range(sizes[d])}
    same = [(("x", 1), 0), (("c", 1), 0), (("s", 1), 0)]
    assert len({labels[position[p]] for p in same}) == 1
    assert (
        labels[position[(("y", 1), 0)]] == labels[position[(("c", 1), 2)]] == labels[position[(("s", 1), 1)]]
    )
    assert (
        labels[position[(("x", 1), 1)]] == labels[position[(("c", 1), 1)]] != labels[position[(("s", 1), 1)]]
    )
    assert (
        labels[position[(("y", 1), 2)]] == labels[position[(("c", 1), 4)]] == labels[position[(("s", 1), 2)]]
    )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_shared_axes_sit_in_the_groups_of_their_first_axis_at_the_same_positions(path):
    analysis = dependency.analyze_model(normalized(path))
    assert analysis.shared_positions, "every reference model has identity-joined axes"
    where: dict[tuple, list[tuple[int, int]]] = {}
    for group in analysis.groups:
        for member in group.members:
            where.setdefault((member.tensor, member.axis), []).append((group.id, id(member.positions)))
    for axis, first in analysis.shared_positions.items():
        assert where[axis] == where[first], (axis, first)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_kept_positions_of_shared_axes_are_computed_as_for_any_axis(path):
    model = normalized(path)
    analysis = dependency.analyze_model(model)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    target = UniformRatio(0.4, round_to=1)
    inputs = SimpleNamespace(weights=weights, activations=None)
    scores = default_importances().get("l1").score(target.groups_to_score(analysis), inputs)
    decisions = target.select(analysis, scores)
    keeps = dim_keeps(analysis, decisions)
    # without the shortcut: every member's dropped positions cleared in its own mask
    expected: dict[tuple, np.ndarray] = {}
    for group in analysis.groups:
        if group.id not in decisions:
            continue
        drop = np.ones(group.size, dtype=bool)
        drop[decisions[group.id]] = False
        for m in group.members:
            mask = expected.setdefault((m.tensor, m.axis), np.ones(m.size, dtype=bool))
            mask[m.positions[drop].reshape(-1)] = False
    assert keeps.keys() == expected.keys()
    for axis, mask in expected.items():
        np.testing.assert_array_equal(keeps[axis], np.flatnonzero(mask), err_msg=str(axis))
    assert keeps.keys() & analysis.shared_positions.keys(), "the shortcut is exercised"


def test_offset_pairs_of_many_maps_are_the_pairs_of_each():
    rng = np.random.default_rng(0)
    maps, sizes_a, sizes_b = [], [], []
    for _ in range(50):
        size_b = int(rng.integers(1, 20))
        if rng.random() < 0.3:
            maps.append(IndexMap.identity())
            sizes_a.append(size_b)
        else:
            step = int(rng.choice([1, 2, 3, -1]))
            start = int(rng.integers(0, size_b))
            room = (size_b - start - 1) // step if step > 0 else start
            maps.append(IndexMap.at_offset(start, step))
            sizes_a.append(int(rng.integers(0, room + 1)) + (1 if room >= 0 else 0))
        sizes_b.append(size_b)
    ia, ib, which = offset_pairs(maps, sizes_a, sizes_b)
    for k, index_map in enumerate(maps):
        want_a, want_b = index_map.pairs(sizes_a[k], sizes_b[k])
        np.testing.assert_array_equal(ia[which == k], want_a)
        np.testing.assert_array_equal(ib[which == k], want_b)


def test_components_come_in_the_order_their_first_axis_is_linked():
    links = [
        Link(("c", 1), ("d", 1), IndexMap.identity()),
        Link(("a", 1), ("b", 0), IndexMap.identity()),
        Link(("e", 0), ("a", 1), IndexMap.identity()),
        Link(("d", 1), ("f", 2), IndexMap.identity()),
    ]
    graph = coupling.coupling_graph(links)
    assert list(graph) == [("c", 1), ("d", 1), ("a", 1), ("b", 0), ("e", 0), ("f", 2)]
    assert coupling.coupling_components(graph) == [
        [("c", 1), ("d", 1), ("f", 2)],
        [("a", 1), ("b", 0), ("e", 0)],
    ]


def test_a_trial_extension_leaves_the_graph_as_it_was_and_sees_what_a_fresh_graph_sees():
    base = [Link(("a", 1), ("b", 0), IndexMap.identity()), Link(("c", 1), ("d", 0), IndexMap.identity())]
    more = [
        Link(("x", 0), ("c", 1), IndexMap.identity()),
        Link(("a", 1), ("b", 0), IndexMap.at_offset(0)),  # an edge the graph already has
        Link(("b", 0), ("y", 0), IndexMap.identity()),
    ]
    graph = coupling.coupling_graph(base)
    before = (list(graph.nodes), sorted(graph.edges))
    with coupling.extended(graph, more) as trial:
        fresh = coupling.coupling_graph(base + more)
        assert list(trial.nodes) == list(fresh.nodes)
        assert coupling.coupling_components(trial) == coupling.coupling_components(fresh)
    assert (list(graph.nodes), sorted(graph.edges)) == before


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_the_analysis_keeps_the_graph_its_groups_come_from(path):
    analysis = dependency.analyze_model(normalized(path))
    graph = analysis.graph
    assert nx.is_frozen(graph)
    assert set(graph.nodes) == {d for link in analysis.links for d in (link.a, link.b)}
    component_of = {d: i for i, c in enumerate(nx.connected_components(graph)) for d in c}
    first_component = []
    for group in analysis.groups:
        found = {component_of[(m.tensor, m.axis)] for m in group.members}
        assert len(found) == 1, group.describe()  # a group never spans two components
        first_component.append(found.pop())
    assert first_component == sorted(first_component)  # group ids follow the component order
