"""Sensitivity curves (onnxprune/group_sensitivity.py), allocation from them (onnxprune/allocation.py)
and their plot: each point is what a full prune of that one group gives."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json

import numpy as np
import onnx
import pytest

import onnxprune.io
from onnxprune import prune
from onnxprune.allocation import allocate_by_sensitivity
from onnxprune.budget import Budget
from onnxprune.errors import UsageError
from onnxprune.fidelity import check_fidelity
from onnxprune.group_sensitivity import (
    GroupCurve,
    GroupRatios,
    SensitivityPoint,
    SensitivityReport,
    SingleGroup,
    sensitivity,
)
from onnxprune.importance import UnitScores
from onnxprune.plots import plot_sensitivity
from tests.conftest import MODELS

RESNETS = [MODELS / "resnet_dynamo.onnx", MODELS / "resnet_torchscript.onnx"]


@pytest.fixture(scope="module")
def resnet_report() -> SensitivityReport:
    return sensitivity(RESNETS[0], ratios=(0.25, 0.5, 0.75), latency_runs=2)


@pytest.mark.parametrize("path", RESNETS, ids=lambda p: p.name)
def test_each_point_is_the_prune_of_that_group_alone(path):
    report = sensitivity(path, ratios=(0.5,), latency_runs=0)
    assert len(report.curves) >= 3
    for curve in report.curves:
        point = curve.points[0]
        result = prune(path, target=SingleGroup(curve.group, 0.5))
        assert result.report.groups_pruned == (1 if point.kept < curve.size else 0)
        assert point.macs_after == result.report.macs_after
        assert point.delta_macs == report.macs_before - result.report.macs_after
        expected = check_fidelity(path, result.model).outputs[0]
        assert point.cosine == pytest.approx(expected.cosine, abs=1e-9)
        assert point.rel_err == pytest.approx(expected.rel_err, abs=1e-9)


def test_single_group_selects_only_its_group():
    analysis = prune(RESNETS[0], ratio=0.0).analysis
    group = max(analysis.prunable_groups, key=lambda g: g.size)
    scores = {group.id: UnitScores(np.arange(group.size, dtype=float)[None, :])}
    target = SingleGroup(group.id, 0.5, round_to=1)
    assert [g.id for g in target.groups_to_score(analysis)] == [group.id]
    kept = target.select(analysis, scores)
    assert list(kept) == [group.id]
    assert kept[group.id].tolist() == list(range(group.size - group.size // 2, group.size))
    with pytest.raises(UsageError):
        SingleGroup(0, 1.0)


def test_report_figures_and_json_round_trip(resnet_report, tmp_path):
    report = resnet_report
    assert report.ratios == [0.25, 0.5, 0.75] and report.macs_before > 0 and report.latency_ms > 0
    for curve in report.curves:
        assert [p.ratio for p in curve.points] == report.ratios
        assert all(p.error is None for p in curve.points)
        removed = [p.delta_macs for p in curve.points]
        assert removed == sorted(removed) and removed[-1] > 0  # more removed at higher ratios
        assert all(p.delta_latency_ms is not None for p in curve.points)
    losses = [c.worst_loss() for c in report.worst(len(report.curves))]
    assert losses == sorted(losses, reverse=True)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(report.to_json()))
    back = SensitivityReport.from_json(json.loads(path.read_text()))
    assert back.to_json() == report.to_json()
    assert report.table()[0][0] == "group" and len(report.table()) == len(report.curves) + 1


def test_a_point_that_rounding_leaves_whole_is_not_run():
    report = sensitivity(RESNETS[0], ratios=(0.1,), latency_runs=0)  # 16 channels, round_to 8
    whole = [c for c in report.curves if c.points[0].kept == c.size]
    assert whole, "expected a group that 0.1 does not touch at round_to 8"
    assert all(c.points[0].delta_macs == 0 and c.points[0].cosine == 1.0 for c in whole)


def test_calibration_data_ranks_by_activation_and_measures_on_held_out_samples():
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((20, 3, 32, 32)).astype(np.float32)}
    report = sensitivity(RESNETS[0], ratios=(0.5,), calibration=data, latency_runs=0)
    assert report.criterion == "activation"
    assert "1 of every 5" in report.fidelity_source
    assert all(c.points[0].cosine is not None for c in report.curves)


def test_bad_ratios_are_usage_errors():
    for ratios in ((), (0.0,), (1.0,), (-0.2, 0.5)):
        with pytest.raises(UsageError):
            sensitivity(RESNETS[0], ratios=ratios)


def test_the_plot_is_written(resnet_report, tmp_path):
    path = plot_sensitivity(resnet_report, tmp_path / "sens.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_missing_matplotlib_is_a_usage_error(resnet_report, tmp_path, monkeypatch):
    real = importlib.import_module

    def no_matplotlib(name, *args):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_matplotlib)
    with pytest.raises(UsageError, match=r"onnxprune\[plot\]"):
        plot_sensitivity(resnet_report, tmp_path / "sens.png")
    assert not (tmp_path / "sens.png").exists()


# --- allocation ---------------------------------------------------------------------------------


def _report(curves: list[list[tuple[float, float, int]]], macs_before: int) -> SensitivityReport:
    made = [
        GroupCurve(
            i, f"g{i}", "channels", 8, [SensitivityPoint(r, 0, cosine=c, delta_macs=d) for r, c, d in pts]
        )
        for i, pts in enumerate(curves)
    ]
    return SensitivityReport("m", "random feeds", "l1", 1, [0.25, 0.5], macs_before, None, 0, made)


def _brute_force(report: SensitivityReport, budget: int) -> float:
    """The least summed loss of any choice that meets the budget, by trying them all."""
    best = np.inf
    options = [[None, *c.points] for c in report.curves]
    for choice in itertools.product(*options):
        saved = sum(p.delta_macs for p in choice if p is not None)
        if report.macs_before - saved <= budget:
            best = min(best, sum(p.loss for p in choice if p is not None))
    return best


def test_allocation_is_the_least_loss_choice_under_the_budget():
    rng = np.random.default_rng(1)
    for _ in range(30):
        curves = []
        for _ in range(4):
            saved = np.sort(rng.integers(1, 40, size=2))
            loss = np.sort(rng.uniform(0, 0.2, size=2))
            curves.append([(0.25, 1 - loss[0], int(saved[0])), (0.5, 1 - loss[1], int(saved[1]))])
        report = _report(curves, 200)
        budget = int(rng.integers(200 - sum(c[1][2] for c in curves), 200))
        chosen = allocate_by_sensitivity(report, budget)
        points = {c.group: {p.ratio: p for p in c.points} for c in report.curves}
        picked = [points[g][r] for g, r in chosen.items()]
        assert report.macs_before - sum(p.delta_macs for p in picked) <= budget
        assert sum(p.loss for p in picked) == pytest.approx(_brute_force(report, budget), abs=1e-12)


def test_allocation_edges():
    report = _report([[(0.25, 0.99, 10), (0.5, 0.9, 20)]], 100)
    assert allocate_by_sensitivity(report, 100) == {}
    assert allocate_by_sensitivity(report, 80) == {0: 0.5}
    with pytest.raises(UsageError, match="out of reach"):
        allocate_by_sensitivity(report, 79)
    failed = dataclasses.replace(report.curves[0].points[1], error="boom")
    report.curves[0].points[1] = failed  # a failed point is never chosen
    with pytest.raises(UsageError, match="out of reach"):
        allocate_by_sensitivity(report, 85)


CREPE = MODELS / "trained" / "crepe_tiny_dynamo.onnx"


@pytest.fixture(scope="module")
def crepe_report() -> SensitivityReport:
    calib = MODELS / "trained" / "data" / "crepe_calib.npz"
    return sensitivity(CREPE, ratios=(0.25, 0.5, 0.75), calibration=calib, latency_runs=0)


@pytest.mark.parametrize("keep", [0.3, 0.45, 0.6, 0.8])
def test_the_allocated_model_meets_the_budget_it_was_given(crepe_report, keep):
    budget = int(keep * crepe_report.macs_before)
    chosen = allocate_by_sensitivity(crepe_report, budget)
    assert chosen
    result = prune(CREPE, target=GroupRatios.of(chosen))
    assert result.report.macs_after <= budget


def test_summed_single_group_savings_overstate_what_groups_save_together(crepe_report):
    """Why the allocation checks the exact MACs: without the cost model it misses budgets."""
    summed_only = dataclasses.replace(crepe_report, cost=None)
    missed = []
    for keep in (0.3, 0.45, 0.6, 0.8):
        budget = int(keep * crepe_report.macs_before)
        result = prune(CREPE, target=GroupRatios.of(allocate_by_sensitivity(summed_only, budget)))
        missed += [keep] if result.report.macs_after > budget else []
    assert missed


def test_a_model_with_external_data_is_measured_like_its_in_memory_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(onnxprune.io, "LAZY_MIN_BYTES", 0)  # every weight stays on disk while pruning
    path = tmp_path / "external.onnx"
    onnx.save_model(
        onnx.load(RESNETS[0]), path, save_as_external_data=True, location="w.bin", size_threshold=0
    )
    external = sensitivity(path, ratios=(0.5,), latency_runs=0)
    in_memory = sensitivity(RESNETS[0], ratios=(0.5,), latency_runs=0)
    assert all(p.error is None for c in external.curves for p in c.points)
    got = [(p.cosine, p.delta_macs) for c in external.curves for p in c.points]
    assert got == [(p.cosine, p.delta_macs) for c in in_memory.curves for p in c.points]


def test_loss_curves_feed_the_budget_target(resnet_report):
    curves = resnet_report.loss_curves()
    assert set(curves) == {c.group for c in resnet_report.curves}
    for curve in resnet_report.curves:
        assert curves[curve.group] == tuple((p.ratio, p.loss) for p in curve.points)
    budget = Budget("macs", 0.6, allocation="sensitivity", sensitivity=curves)
    result = prune(RESNETS[0], target=budget)
    assert result.report.macs_after <= 0.6 * result.report.macs_before * 1.02
