"""Vocabulary axes are not channels: a one-hot encoding (`OneHot`, or dynamo's
`Equal(Unsqueeze(ids, -1), arange(V))`) and an embedding lookup (`Gather(table, ids)`) of a graph
input make an axis whose positions are input values; it is pinned, with a barrier that says so."""

from __future__ import annotations

import pytest

import onnxprune
from tests.rule_cases import Case, build, check_pruning, check_structure, ids, runnable

VOCAB = 6
ONE_HOT = f"""g (int64[1, 5] ids) => (float[1, 2, 5] y)
    <int64 depth = {{{VOCAB}}}, float[2] values = {{0.0, 1.0}}, float[4, {VOCAB}, 1] w1, float[2, 4, 1] w2> {{
    [onehot] oh = OneHot <axis = 1> (ids, depth, values)
    [conv1] h = Conv (oh, w1)
    [act] r = Relu (h)
    [conv2] y = Conv (r, w2)
}}"""
EQUAL = f"""g (int64[1, 5] ids) => (float[1, 5, 2] y)
    <int64[1] last = {{-1}}, int64[{VOCAB}] table = {{0, 1, 2, 3, 4, 5}},
     float[{VOCAB}, 4] w1, float[4, 2] w2> {{
    [unsq] u = Unsqueeze (ids, last)
    [eq] e = Equal (u, table)
    [cast] f = Cast <to = 1> (e)
    [fc1] h = MatMul (f, w1)
    [act] r = Relu (h)
    [fc2] y = MatMul (r, w2)
}}"""
EMBEDDING = f"""g (int64[1, 5] ids) => (float[1, 5, 2] y) <float[{VOCAB}, 4] emb, float[4, 2] w2> {{
    [embed] h = Gather (emb, ids)
    [act] r = Relu (h)
    [fc2] y = MatMul (r, w2)
}}"""

CASES = [
    Case(
        "onehot-of-graph-input",
        ONE_HOT,
        groups=1,
        prunable={"w1:0": 4, "w2:1": 4},
        pinned={"w1:1": ("onehot", "OneHot")},
    ),
    Case(
        # torch's F.one_hot as the dynamo exporter writes it: the compared table is a constant
        "equal-one-hot-of-graph-input",
        EQUAL,
        groups=1,
        prunable={"w1:1": 4, "w2:0": 4},
        pinned={"w1:0": ("eq", "Equal"), "table:0": ("eq", "Equal")},
    ),
    Case(
        "gather-embedding-of-graph-input",
        EMBEDDING,
        groups=1,
        prunable={"emb:1": 4, "w2:0": 4},
        pinned={"emb:0": ("embed", "Gather")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_barrier_names_the_vocabulary_and_its_input(case: Case) -> None:
    """`onnxprune analyze` lists the barrier: it says vocabulary and names the graph input."""
    analysis = onnxprune.analyze(case.model())
    texts = [str(b) for b in analysis.barriers]
    assert any("vocabulary of" in t and "graph input" in t for t in texts), texts


def test_one_hot_of_a_computed_tensor_is_still_a_vocabulary() -> None:
    graph = ONE_HOT.replace("(ids, depth", "(ids2, depth")
    model = build(graph.replace("[onehot]", "[plus] ids2 = Add (ids, depth)\n    [onehot]"))
    texts = [str(b) for b in onnxprune.analyze(model).barriers]
    assert any("vocabulary of 'ids2' is not a channel axis" in t for t in texts), texts
