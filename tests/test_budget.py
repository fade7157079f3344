"""Budget targets: allocation on hand-built groups where the optimum is known, caps and minimums,
landing within tolerance; cost models against real counts; asked vs achieved in the report."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from onnxprune import prune
from onnxprune.analysis import Group, Member
from onnxprune.budget import Budget
from onnxprune.costs import CostModel, MacsCost, ParamsCost
from onnxprune.errors import UsageError
from onnxprune.importance import UnitScores
from onnxprune.latency import _fit
from onnxprune.metrics import count_macs, count_params
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.speedup import _next_budget
from onnxprune.stages import Analyze, Normalize, run_stages
from onnxprune.targets import UniformRatio
from tests.conftest import ROOT as REPO


def _group(gid: int, size: int, *, heads: bool = False) -> Group:
    block = 4 if heads else 1
    positions = np.arange(size * block, dtype=np.int64).reshape(size, block)
    return Group(gid, size, (Member(f"w{gid}", 0, size * block, positions, True, "out"),), True)


def _analysis(*groups: Group) -> SimpleNamespace:
    return SimpleNamespace(groups=groups, prunable_groups=groups)


class UnitCost(CostModel):
    """Every unit of group g costs `weights[g]`: a linear model where the optimum is known."""

    metric = "macs"

    def __init__(self, groups: tuple[Group, ...], weights: dict[int, float]) -> None:
        self.groups, self.weights = groups, weights

    def cost(self, kept) -> float:
        return sum(self.weights[g.id] * kept.get(g.id, g.size) for g in self.groups)


def _setup(weights=None):
    a, b = _group(0, 16), _group(1, 16)
    low_then_high = np.r_[np.full(8, 0.01), np.full(8, 1.0)]
    rng = np.random.default_rng(0)
    scores = {0: UnitScores(low_then_high[None]), 1: UnitScores(1 + 0.01 * rng.random((1, 16)))}
    return _analysis(a, b), scores, UnitCost((a, b), weights or {0: 1.0, 1: 1.0})


def test_global_allocation_removes_the_units_that_matter_least_across_groups():
    analysis, scores, costs = _setup()
    allocation = Budget("macs", 0.75, round_to=1).allocate(analysis, scores, costs)
    assert allocation.met and allocation.predicted == pytest.approx(0.75)
    assert list(allocation.decisions) == [0]  # group 1's units all matter alike: it stays whole
    assert allocation.decisions[0].tolist() == list(range(8, 16))


def test_uniform_allocation_shares_the_budget_alike():
    analysis, scores, costs = _setup()
    allocation = Budget("macs", 0.75, allocation="uniform", round_to=1).allocate(analysis, scores, costs)
    assert allocation.met
    assert sorted(len(k) for k in allocation.decisions.values()) == [12, 12]


def test_the_cap_bounds_every_group_and_the_report_says_the_budget_is_out_of_reach():
    analysis, scores, costs = _setup()
    allocation = Budget("macs", 0.2, max_group_ratio=0.5, round_to=1).allocate(analysis, scores, costs)
    assert allocation.reachable == pytest.approx(0.5)
    assert all(len(k) == 8 for k in allocation.decisions.values())
    assert not allocation.met and "cannot go below 0.500" in allocation.note


def test_min_kept_holds_even_under_a_loose_cap():
    analysis, scores, costs = _setup()
    budget = Budget("macs", 0.05, max_group_ratio=0.99, min_kept=3, round_to=1)
    allocation = budget.allocate(analysis, scores, costs)
    assert min(len(k) for k in allocation.decisions.values()) == 3


def test_kept_counts_are_aligned_unless_aligned_steps_cannot_land_the_budget():
    a, b = _group(0, 64), _group(1, 64)
    analysis = _analysis(a, b)
    scores = {g.id: UnitScores(np.arange(1, 65, dtype=float)[None]) for g in (a, b)}
    costs = UnitCost((a, b), {0: 1.0, 1: 1.0})
    aligned = Budget("macs", 0.75, round_to=8).allocate(analysis, scores, costs)
    assert aligned.met and all(len(k) % 8 == 0 for k in aligned.decisions.values())
    odd = Budget("macs", 0.7, round_to=16, tolerance=0.01).allocate(analysis, scores, costs)
    assert odd.met and odd.remarks  # 89.6 of 128 units: no multiple of 16 fits within 1 %


def test_heads_take_part_without_alignment():
    heads, ffn = _group(0, 12, heads=True), _group(1, 64)
    analysis = _analysis(heads, ffn)
    scores = {0: UnitScores(np.r_[np.full(4, 0.01), np.ones(8)][None]), 1: UnitScores(np.ones((1, 64)))}
    costs = UnitCost((heads, ffn), {0: 16.0, 1: 1.0})
    allocation = Budget("macs", 1 - 64 / (12 * 16 + 64), round_to=8).allocate(analysis, scores, costs)
    assert allocation.met and len(allocation.decisions[0]) == 8 and 1 not in allocation.decisions


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "flops", "keep": 0.5},
        {"metric": "macs", "keep": 0.0},
        {"metric": "macs", "keep": 1.5},
        {"metric": "macs", "keep": 0.5, "allocation": "greedy"},
        {"metric": "macs", "keep": 0.5, "max_group_ratio": 1.0},
        {"metric": "macs", "keep": 0.5, "allocation": "sensitivity"},
    ],
)
def test_bad_budgets_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        Budget(**kwargs)


def test_one_budget_at_a_time_and_not_with_a_ratio():
    with pytest.raises(UsageError, match="one budget"):
        prune(REPO / "models/default.onnx", target_macs=0.5, target_params=0.5)
    with pytest.raises(UsageError, match="either a budget"):
        prune(REPO / "models/default.onnx", target_macs=0.5, ratio=0.3)


MODELS = [
    "models/default.onnx",
    "models/torchvision/mobilenet_v2_torchscript.onnx",
    "models/densenet_dynamo.onnx",
    "models/transformers/llama_gqa_dynamo.onnx",
]


@pytest.mark.parametrize("rel", MODELS)
def test_cost_models_predict_the_counts_of_the_pruned_model(rel):
    session = PruneSession.open(REPO / rel, PruneOptions(UniformRatio(0.4)))
    run_stages(session, [Normalize(), Analyze()])
    target = UniformRatio(0.4)
    kept = {g.id: target.kept(g.size, g.kind) for g in session.analysis.prunable_groups}
    result = prune(REPO / rel, ratio=0.4)
    macs = MacsCost.build(session.model, session.analysis)
    params = ParamsCost.build(session.model, session.analysis)
    assert macs.full == count_macs(session.model)
    assert macs.cost(kept) == count_macs(result.model)
    assert params.cost(kept) == count_params(result.model)


@pytest.mark.parametrize("rel", MODELS)
@pytest.mark.parametrize("metric", ["macs", "params"])
def test_budgets_land_within_two_percent_and_report_asked_against_achieved(rel, metric):
    result = prune(REPO / rel, **{f"target_{metric}": 0.5})
    budget = result.report.budget
    real = (
        count_macs(result.model) / result.report.macs_before
        if metric == "macs"
        else result.report.params_after / result.report.params_before
    )
    assert budget["asked"] == 0.5 and budget["achieved"] == pytest.approx(real, abs=1e-6)
    assert abs(real - 0.5) <= 0.01, budget


def test_a_ratio_that_rounding_cancels_is_reported():
    report = prune(REPO / "models/default.onnx", ratio=0.1).report
    assert report.notes and "stay whole" in report.notes[0] and "--round-to 1" in report.notes[0]
    assert prune(REPO / "models/default.onnx", ratio=0.1, round_to=1).report.notes == []


def test_latency_fits_recover_a_linear_node_time():
    assert _fit([(100.0, 15.0), (50.0, 10.0), (25.0, 7.5)]) == pytest.approx((5.0, 0.1))
    assert _fit([(100.0, 10.0), (50.0, 12.0)])[1] == 0.0  # slower when smaller: a constant
    assert _fit([(100.0, 5.0), (50.0, 1.0)])[0] == 0.0  # never a negative constant


def test_the_next_latency_budget_interpolates_between_measured_attempts():
    tried = [
        {"latency_budget": 0.5, "predicted_speedup": 2.0, "measured_speedup": 2.5},
        {"latency_budget": 0.7, "predicted_speedup": 1.4, "measured_speedup": 1.25},
    ]
    assert _next_budget(tried, 0.6) == pytest.approx(0.5 + (0.6 - 0.4) / (0.8 - 0.4) * 0.2)
    assert _next_budget(tried[:1], 0.5) == pytest.approx(0.5 / (0.4 / 0.5))


def test_a_speedup_target_is_measured_and_every_attempt_reported():
    result = prune(REPO / "models/torchvision/resnet18_dynamo.onnx", target_speedup=1.5)
    budget = result.report.budget
    assert budget["metric"] == "latency" and budget["asked_speedup"] == 1.5
    assert 1 <= len(budget["attempts"]) <= 4
    assert budget["measured_speedup"] in [a["measured_speedup"] for a in budget["attempts"]]
    assert ("note" in budget) == (abs(budget["measured_speedup"] - 1.5) > 0.075)
    assert count_macs(result.model) < result.report.macs_before
