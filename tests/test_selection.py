"""Targets: how many units stay, alignment, the head/channel split, which units; replayed plans."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from onnxprune.analysis import Group, Member
from onnxprune.errors import PlanError, UsageError
from onnxprune.importance import UnitScores
from onnxprune.plan import Plan, TensorSlice
from onnxprune.targets import DEFAULT_ROUND_TO, ReplayPlan, UniformRatio, kept_count, top_units


@pytest.mark.parametrize(
    ("size", "ratio", "round_to", "kept"),
    [
        (64, 0.4, 1, 39),
        (64, 0.4, 8, 40),
        (64, 0.0, 8, 64),  # ratio 0 never removes, even when 64 is aligned already
        (20, 0.0, 8, 20),  # nor rounds an unaligned group down
        (20, 0.1, 8, 20),  # 18 kept rounds up past the size: the group stays whole
        (20, 0.3, 8, 16),
        (6, 0.4, 8, 4),  # too small to align: the ratio alone
        (15, 0.5, 8, 8),
        (1000, 0.4, 16, 608),
        (3, 0.9, 1, 1),  # at least one unit stays
        (100, 0.95, 8, 8),
        (32, 0.4, 8, 24),  # 20 kept rounds up: rounding never removes more than asked
        (32, 0.1, 8, 32),
    ],
)
def test_kept_count(size, ratio, round_to, kept):
    assert kept_count(size, ratio, round_to) == kept


def test_default_alignment_is_eight():
    assert DEFAULT_ROUND_TO == 8


@pytest.mark.parametrize(("ratio", "round_to"), [(1.0, 1), (-0.1, 1), (0.5, 0)])
def test_bad_values_are_usage_errors(ratio, round_to):
    with pytest.raises(UsageError):
        kept_count(10, ratio, round_to)


# --- targets, on hand-built groups ------------------------------------------------------------


def _group(gid: int, size: int, *, heads: bool = False, prunable: bool = True) -> Group:
    """A group of `size` units; a head group's units are blocks of 4 positions."""
    block = 4 if heads else 1
    positions = np.arange(size * block, dtype=np.int64).reshape(size, block)
    member = Member(f"w{gid}", 0, size * block, positions, True, "out")
    return Group(gid, size, (member,), prunable)


def _analysis(*groups: Group) -> SimpleNamespace:
    return SimpleNamespace(groups=groups, prunable_groups=tuple(g for g in groups if g.prunable))


def _scores(**tables) -> dict[int, UnitScores]:
    return {int(k[1:]): UnitScores(np.atleast_2d(np.asarray(v, dtype=float))) for k, v in tables.items()}


def test_uniform_keeps_the_highest_scores_of_every_group_that_loses_units():
    analysis = _analysis(_group(0, 4), _group(1, 2), _group(2, 5, prunable=False))
    target = UniformRatio(0.5, round_to=1)
    assert [g.id for g in target.groups_to_score(analysis)] == [0, 1]  # pinned group 2: not read
    scores = _scores(g0=[0.1, 5.0, 0.2, 3.0], g1=[2.0, 1.0])
    decisions = target.select(analysis, scores)
    np.testing.assert_array_equal(decisions[0], [1, 3])
    np.testing.assert_array_equal(decisions[1], [0])


def test_uniform_ranks_by_member_normalized_scores():
    """Two members: the small-scale one weighs as much as the large one once each is divided
    by its mean; unit 0 wins on the small member by far, unit 1 on the large one by a little."""
    analysis = _analysis(_group(0, 2))
    scores = {0: UnitScores(np.array([[1000.0, 1100.0], [9.0, 1.0]]))}
    np.testing.assert_array_equal(UniformRatio(0.5, round_to=1).select(analysis, scores)[0], [0])
    # the raw total would have kept unit 1
    assert scores[0].total().argmax() == 1


def test_uniform_heads_use_the_head_ratio_without_rounding():
    analysis = _analysis(_group(0, 12, heads=True), _group(1, 64))
    target = UniformRatio(0.25, head_ratio=0.5, round_to=8)
    assert analysis.groups[0].kind == "heads"
    scores = _scores(g0=np.arange(12.0), g1=np.arange(64.0))
    decisions = target.select(analysis, scores)
    np.testing.assert_array_equal(decisions[0], np.arange(6, 12))  # 6 of 12 heads, not rounded to 8
    assert len(decisions[1]) == 48  # 64 - 16, a multiple of 8


def test_uniform_zero_ratio_scores_and_removes_nothing():
    analysis = _analysis(_group(0, 16))
    target = UniformRatio(0.0)
    assert target.groups_to_score(analysis) == []
    assert target.select(analysis, {}) == {}


def test_ties_keep_the_lower_index():
    np.testing.assert_array_equal(top_units(np.array([1.0, 1.0, 1.0, 2.0]), 2), [0, 3])


@pytest.mark.parametrize(
    "kwargs", [{"ratio": 1.0}, {"ratio": 0.2, "head_ratio": -0.1}, {"ratio": 0.2, "round_to": 0}]
)
def test_uniform_refuses_bad_settings(kwargs):
    with pytest.raises(UsageError):
        UniformRatio(**kwargs)


def _plan(*slices: TensorSlice) -> Plan:
    return Plan(slices=slices)


def test_replay_reads_the_kept_units_back_from_the_plan():
    analysis = _analysis(_group(0, 4), _group(1, 3, heads=True))
    plan = _plan(
        TensorSlice("w0", 0, 4, (1, 2)),
        TensorSlice("w1", 0, 12, (0, 1, 2, 3, 8, 9, 10, 11)),  # heads 0 and 2
    )
    target = ReplayPlan(plan)
    assert target.groups_to_score(analysis) == []
    decisions = target.select(analysis, {})
    np.testing.assert_array_equal(decisions[0], [1, 2])
    np.testing.assert_array_equal(decisions[1], [0, 2])


def test_replay_refuses_a_plan_of_another_size():
    with pytest.raises(PlanError, match="size 8, but the model's axis has 4"):
        ReplayPlan(_plan(TensorSlice("w0", 0, 8, (0,)))).select(_analysis(_group(0, 4)), {})


def test_replay_refuses_a_plan_that_prunes_a_pinned_group():
    with pytest.raises(PlanError, match="which this model pins"):
        ReplayPlan(_plan(TensorSlice("w0", 0, 4, (0,)))).select(_analysis(_group(0, 4, prunable=False)), {})


def test_replay_refuses_different_units_of_coupled_tensors():
    group = _group(0, 4)
    twin = Member("v0", 1, 4, group.members[0].positions, True, "in")
    coupled = Group(0, 4, (*group.members, twin), True)
    plan = _plan(TensorSlice("w0", 0, 4, (0, 1)), TensorSlice("v0", 1, 4, (0, 2), role="in"))
    with pytest.raises(PlanError, match="different channels of coupled tensors"):
        ReplayPlan(plan).select(_analysis(coupled), {})


def test_replay_check_refuses_slices_the_plan_does_not_imply():
    target = ReplayPlan(_plan(TensorSlice("w0", 0, 4, (0, 1))))
    target.check(_plan(TensorSlice("w0", 0, 4, (0, 1))))
    with pytest.raises(PlanError, match="b axis 0 is not implied by the plan"):
        target.check(_plan(TensorSlice("w0", 0, 4, (0, 1)), TensorSlice("b", 0, 4, (0, 1))))
