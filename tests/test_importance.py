"""Unit scores of coupling groups against a straightforward reference implementation, on the
groups the analyzer finds in reference models (plain channels, DenseNet feature maps shared by
many groups, ShuffleNet's channel shuffle, attention heads of several columns each)."""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.analysis import Group
from onnxprune.analysis.dependency import Member
from onnxprune.cli import _prune_parser
from onnxprune.errors import UsageError
from onnxprune.importance import Importance, ImportanceRegistry, UnitScores, default_importances
from onnxprune.importance.magnitude import member_table
from onnxprune.pipeline import analyze
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import default_stages, run_stages
from onnxprune.targets import UniformRatio

from .conftest import MODELS

PATHS = [
    MODELS / "default.onnx",
    MODELS / "densenet_dynamo.onnx",
    MODELS / "torchvision" / "shufflenet_v2_x1_0_dynamo.onnx",
    MODELS / "transformers" / "bert_dynamo.onnx",  # heads of 16 columns
    MODELS / "transformers" / "vit_torchscript.onnx",  # heads, and members on axis 2
]


CRITERIA = ("l1", "l2")  # the magnitude criteria


def unit_scores(group: Group, weights, criterion: str, norms: dict | None = None) -> np.ndarray:
    """What the uniform target ranks a group's units by: the magnitude table, member-normalized."""
    return UnitScores(member_table(group, weights, criterion, norms)).member_normalized()


def reference_scores(group: Group, weights: dict[str, np.ndarray], criterion: str) -> np.ndarray:
    """Per member: each position's sum of |w| (l1) or w**2 (l2) over the other axes; a unit's
    score there is the sum over its positions (its square root for l2), divided by the member's
    mean score when that is positive; the unit's score is the sum over members."""
    total = np.zeros(group.size, dtype=np.float64)
    for member in group.weight_members:
        w = weights[member.tensor]
        others = tuple(a for a in range(w.ndim) if a != member.axis)
        w = w.astype(np.float64)
        values = np.abs(w) if criterion == "l1" else w**2
        per_position = values.sum(axis=others)
        scores = np.array([per_position[list(unit)].sum() for unit in member.positions])
        if criterion == "l2":
            scores = np.sqrt(scores)
        mean = scores.mean()
        if mean > 0:
            total += scores / mean
    return total


@cache
def loaded(path) -> tuple[tuple[Group, ...], dict[str, np.ndarray]]:
    """The groups of a reference model and its weights by name (the analyzer's names are the
    input model's)."""
    groups = analyze(path).groups
    model = onnx.load(path)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return groups, weights


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_unit_scores_match_the_reference(path, criterion):
    groups, weights = loaded(path)
    assert any(g.weight_members for g in groups)
    for group in groups:
        got = unit_scores(group, weights, criterion)
        assert got.shape == (group.size,)
        assert got.dtype == np.float64
        np.testing.assert_allclose(
            got, reference_scores(group, weights, criterion), rtol=1e-9, err_msg=group.describe()
        )


def test_reference_models_cover_multi_column_units_and_higher_axes():
    # the cases the vectorized paths treat apart: units of several positions, and axes past 1
    members = [m for path in PATHS for g in loaded(path)[0] for m in g.weight_members]
    assert max(m.positions.shape[1] for m in members) > 1
    assert max(m.axis for m in members) >= 2
    # and tensors read by several groups (a DenseNet feature map's BatchNorm): what `norms` shares
    densenet, _ = loaded(MODELS / "densenet_dynamo.onnx")
    groups_of: dict[str, int] = {}
    for group in densenet:
        for tensor in {m.tensor for m in group.weight_members}:
            groups_of[tensor] = groups_of.get(tensor, 0) + 1
    assert max(groups_of.values()) >= 3


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_shared_norms_give_the_same_scores(path, criterion):
    groups, weights = loaded(path)
    shared: dict = {}
    for group in groups:
        with_shared = unit_scores(group, weights, criterion, shared)
        np.testing.assert_array_equal(with_shared, unit_scores(group, weights, criterion, {}))
        np.testing.assert_array_equal(with_shared, unit_scores(group, weights, criterion))
    used = {(m.tensor, m.axis, criterion) for g in groups for m in g.weight_members}
    assert used <= set(shared)
    # a second pass over the filled cache reads it and gives the same again
    for group in groups:
        np.testing.assert_array_equal(
            unit_scores(group, weights, criterion, shared), unit_scores(group, weights, criterion)
        )


def test_shared_norms_across_criteria_do_not_mix():
    groups, weights = loaded(MODELS / "default.onnx")
    shared: dict = {}
    for group in groups:
        l1 = unit_scores(group, weights, "l1", shared)
        l2 = unit_scores(group, weights, "l2", shared)
        np.testing.assert_array_equal(l2, unit_scores(group, weights, "l2"))
        np.testing.assert_array_equal(l1, unit_scores(group, weights, "l1"))


def member(tensor: str, axis: int, positions: list[list[int]], size: int) -> Member:
    return Member(tensor, axis, size, np.asarray(positions, dtype=np.int64), True, "out")


def test_hand_built_group_with_blocks_a_high_axis_and_an_all_zero_member():
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((3, 4, 6)).astype(np.float32),  # units are column pairs of axis 2
        "b": rng.standard_normal(6).astype(np.float32),
        "z": np.zeros((6, 2), np.float32),  # all zero: adds nothing
    }
    group = Group(
        0,
        3,
        (
            member("w", 2, [[0, 1], [2, 3], [4, 5]], 6),
            member("b", 0, [[5, 0], [1, 4], [2, 3]], 6),
            member("z", 0, [[0, 1], [2, 3], [4, 5]], 6),
        ),
        True,
    )
    for criterion in CRITERIA:
        got = unit_scores(group, weights, criterion)
        np.testing.assert_allclose(got, reference_scores(group, weights, criterion), rtol=1e-9)
    # by hand, l1: each member's unit scores over their mean, summed
    w1 = np.abs(weights["w"]).astype(np.float64).sum(axis=(0, 1))
    b1 = np.abs(weights["b"]).astype(np.float64)
    ws, bs = w1.reshape(3, 2).sum(axis=1), b1[[[5, 0], [1, 4], [2, 3]]].sum(axis=1)
    np.testing.assert_allclose(unit_scores(group, weights, "l1"), ws / ws.mean() + bs / bs.mean(), rtol=1e-9)


def test_a_group_without_float_weights_scores_zero():
    weights = {"idx": np.arange(4, dtype=np.int64)}
    group = Group(0, 4, (member("idx", 0, [[0], [1], [2], [3]], 4),), True)
    np.testing.assert_array_equal(unit_scores(group, weights, "l1"), np.zeros(4))


def test_unknown_criterion_is_refused_naming_the_known_ones():
    with pytest.raises(UsageError, match=r"'l3' is not one of activation, fluctuation, l1, l2"):
        default_importances().get("l3")


@pytest.mark.parametrize("criterion", CRITERIA)
def test_float16_weights_are_reduced_in_float64(criterion):
    """|w| = 300 squared overflows float16 (max 65504); 1e-4 squared underflows it."""
    w = np.array([[300.0, 300.0], [1e-4, 1e-4]], dtype=np.float16)
    member = Member("w", 0, 2, np.array([[0], [1]]), True, "out")
    group = Group(0, 2, (member,), True)
    scores = unit_scores(group, {"w": w}, criterion)
    assert np.all(np.isfinite(scores)) and np.all(scores > 0)
    np.testing.assert_allclose(scores, reference_scores(group, {"w": w}, criterion), rtol=1e-9)


# --- the registry and the interface ---------------------------------------------------------


class _Constant(Importance):
    """A criterion scoring every unit alike (a stand-in for a criterion added by a new module)."""

    def __init__(self, name: str, needs_activations: bool = False) -> None:
        self.name = name
        self.summary = "every unit alike"
        self.needs_activations = needs_activations

    def score(self, groups, inputs):
        return {g.id: UnitScores(np.ones((1, g.size))) for g in groups}


def test_every_module_with_criteria_contributes_them():
    registry = default_importances()
    assert registry.names() == ("activation", "fluctuation", "l1", "l2")
    assert all(isinstance(c, Importance) for c in registry)
    assert "l1" in registry and "taylor" not in registry


def test_a_name_registered_twice_is_refused():
    registry = ImportanceRegistry([_Constant("flat")])
    with pytest.raises(ValueError, match="already registered"):
        registry.add(_Constant("flat"))


def test_cli_choices_come_from_the_registry():
    action = next(a for a in _prune_parser()._actions if a.dest == "criterion")
    assert tuple(action.choices) == default_importances().names()
    assert all(c.summary in action.help for c in default_importances())


def test_magnitude_scores_every_group_asked_for_on_the_weights_scale():
    groups, weights = loaded(MODELS / "default.onnx")
    asked = [g for g in groups if g.weight_members][:3]
    inputs = SimpleNamespace(weights=weights, activations=None)
    scores = default_importances().get("l1").score(asked, inputs)
    assert sorted(scores) == sorted(g.id for g in asked)
    for group in asked:
        table = scores[group.id].table
        assert table.shape == (len(group.weight_members), group.size)
        # row i is the L1 norm of each unit's slice of member i, unnormalized: weights doubled,
        # scores doubled
        doubled = {name: 2 * w for name, w in weights.items()}
        twice = (
            default_importances().get("l1").score([group], SimpleNamespace(weights=doubled, activations=None))
        )
        np.testing.assert_allclose(twice[group.id].table, 2 * table, rtol=1e-12)


def test_unit_scores_reductions():
    scores = UnitScores(np.array([[1.0, 3.0], [10.0, 10.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(scores.member_normalized(), [1.5, 2.5])  # the zero row adds nothing
    np.testing.assert_array_equal(scores.total(), [11.0, 13.0])
    assert scores.size == 2
    empty = UnitScores(np.zeros((0, 3)))
    np.testing.assert_array_equal(empty.member_normalized(), np.zeros(3))


def test_a_criterion_that_needs_activations_is_refused_without_data():
    options = PruneOptions(UniformRatio(0.4), importance=_Constant("act", needs_activations=True))
    session = PruneSession.open(MODELS / "default.onnx", options)
    with pytest.raises(UsageError, match="'act' needs calibration data"):
        run_stages(session, default_stages())


def test_a_new_criterion_prunes_through_the_whole_pipeline():
    """A criterion object passed in options is what ranks the units: a constant score keeps the
    first units of every group (stable ties)."""
    options = PruneOptions(UniformRatio(0.5, round_to=1), importance=_Constant("flat"))
    session = run_stages(PruneSession.open(MODELS / "default.onnx", options), default_stages())
    assert session.decisions
    for gid, kept in session.decisions.items():
        np.testing.assert_array_equal(kept, np.arange(len(kept)), err_msg=str(gid))
    assert session.report.criterion == "flat"
