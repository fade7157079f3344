"""Sweeps (onnxprune/sweep.py) on every executor (onnxprune/executors.py), the Pareto plot, and
the `sensitivity` / `sweep` commands."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import ray

import onnxprune.stages
from onnxprune import prune
from onnxprune.calibration import calibration_data
from onnxprune.cli import main
from onnxprune.errors import UsageError
from onnxprune.executors import InProcess, LocalProcesses, RayExecutor
from onnxprune.plots import pareto_front, plot_pareto
from onnxprune.sweep import calibration_stats, parse_ratios, ratio_specs, sweep
from tests.conftest import MODELS

MODEL = MODELS / "resnet_dynamo.onnx"
SPECS = [*ratio_specs([0.25, 0.5]), {"ratio": 1.5}, {"ratio": 0.5, "round_to": 1}]


@pytest.fixture(scope="module")
def in_process():
    return sweep(MODEL, SPECS, bench_runs=2)


def test_every_trial_is_a_row_and_a_failed_one_says_why(in_process):
    rows = in_process.rows
    assert [r.index for r in rows] == [0, 1, 2, 3]
    assert [r.ok for r in rows] == [True, True, False, True]
    assert "UsageError" in rows[2].error and "1.5" in rows[2].error
    for row in (rows[0], rows[1], rows[3]):
        assert row.valid is True and row.error is None
        assert 0 < row.macs_after < row.macs_before and row.ideal_speedup > 1
        assert row.speedup is not None and row.latency_ms > 0
        assert 0 < row.cosine <= 1 and row.fidelity_source == "random feeds"
    assert rows[1].macs_after < rows[0].macs_after
    table = in_process.table()
    assert table[3][2] == "FAILED" and "1.5" in table[3][-1]
    assert json.loads(json.dumps(in_process.to_json()))["rows"][2]["ok"] is False


def test_local_processes_write_the_same_table(in_process):
    report = sweep(MODEL, SPECS, executor=LocalProcesses(2), bench_runs=2)
    assert report.markdown(timing=False) == in_process.markdown(timing=False)
    assert report.executor == "local processes x2"


def test_a_local_ray_instance_writes_the_same_table(in_process):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = sweep(MODEL, SPECS, executor=RayExecutor(), bench_runs=2)
    finally:
        ray.shutdown()
    assert report.executor == "ray (auto)"
    assert report.markdown(timing=False) == in_process.markdown(timing=False)


def _die(job, **shared):
    if job == 1:
        os._exit(3)  # the worker process dies
    return job * 10


def test_a_worker_that_dies_is_a_failed_result_not_a_stopped_sweep():
    results = LocalProcesses(2).run(_die, [0, 1], shared={}, on_error=lambda job, exc: f"failed {job}")
    assert results[1] == "failed 1"
    assert results[0] in (0, "failed 0")  # a broken pool may take its neighbour with it


def test_in_process_executor_reports_errors_per_job():
    def fn(job):
        if job == 2:
            raise ValueError("no")
        return job

    assert InProcess().run(fn, [1, 2, 3], shared={}, on_error=lambda j, e: str(e)) == [1, "no", 3]


def test_calibration_statistics_are_taken_once_and_shared(monkeypatch):
    data = {"x": np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)}
    calls = []
    real = onnxprune.stages.collect_activation_stats
    monkeypatch.setattr(
        onnxprune.stages, "collect_activation_stats", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    report = sweep(MODEL, ratio_specs([0.25, 0.5, 0.75]), calibration=data, bench_runs=0, validate=False)
    assert len(calls) == 1  # in the parent, not once per trial
    assert report.calibration["feeds"] > 0 and all(r.ok for r in report.rows)
    assert all("1 of every 5" in r.fidelity_source for r in report.rows)  # held-out samples
    # the shared statistics select what the trial's own calibration would have
    stats = calibration_stats(MODEL, data)
    shared = calibration_data(data)
    own = prune(MODEL, ratio=0.5, calibration=data, compensate="none")
    given = prune(
        MODEL, ratio=0.5, calibration=type(shared)(shared.fit, shared.holdout, stats), compensate="none"
    )
    assert given.plan.to_json() == own.plan.to_json()


def test_trial_settings_cannot_override_the_shared_ones():
    report = sweep(MODEL, [{"ratio": 0.5, "calibration": "x.npz"}], bench_runs=0, validate=False)
    assert not report.rows[0].ok and "calibration" in report.rows[0].error


def test_parse_ratios():
    assert parse_ratios("0.1:0.6:0.1") == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert parse_ratios("0.2:0.3:0.05") == [0.2, 0.25, 0.3]
    assert parse_ratios("0.5") == [0.5]
    for bad in ("0.1:0.6", "0.6:0.1:0.1", "0.1:0.6:0", "a,b"):
        with pytest.raises(UsageError):
            parse_ratios(bad)


def test_the_pareto_plot_is_written(in_process, tmp_path):
    path = plot_pareto(in_process, tmp_path / "pareto.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert pareto_front([(1.0, 0.9), (2.0, 0.8), (1.5, 0.7), (2.0, 0.85)]) == [(1.0, 0.9), (2.0, 0.85)]


def test_sweep_command_writes_table_json_and_plot(tmp_path, capsys):
    args = ["sweep", str(MODEL), "--ratios", "0.25,0.5", "--spec", '{"ratio": 2}', "--workers", "2"]
    assert main([*args, "--bench-runs", "2", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 trials, 1 failed" in out
    data = json.loads((tmp_path / "resnet_dynamo_sweep.json").read_text())
    assert [r["ok"] for r in data["rows"]] == [True, True, False]
    assert "FAILED" in (tmp_path / "resnet_dynamo_sweep.md").read_text()
    assert (tmp_path / "resnet_dynamo_sweep.png").stat().st_size > 10_000


def test_sensitivity_command_writes_table_json_and_plot(tmp_path, capsys):
    args = ["sensitivity", str(MODEL), "--ratios", "0.5", "--latency-runs", "0", "--out-dir", str(tmp_path)]
    assert main(args) == 0
    assert "worst: group" in capsys.readouterr().out
    data = json.loads((tmp_path / "resnet_dynamo_sensitivity.json").read_text())
    assert data["ratios"] == [0.5] and data["curves"]
    assert (tmp_path / "resnet_dynamo_sensitivity.md").read_text().startswith("| group")
    assert (tmp_path / "resnet_dynamo_sensitivity.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", str(MODEL)],
        ["sweep", str(MODEL), "--spec", "{not json"],
        ["sweep", str(MODEL), "--spec", "[1]"],
        ["sweep", str(MODEL), "--ratios", "0.5", "--workers", "0"],
        ["sweep", str(MODEL), "--ratios", "0.5", "--out-dir", "/nonexistent/dir"],
        ["sweep", "missing.onnx", "--ratios", "0.5"],
        ["sensitivity", str(MODEL), "--ratios", "1.2"],
    ],
)
def test_bad_command_lines_are_usage_errors(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_readme_example_runs(tmp_path, monkeypatch):
    readme = (MODELS.parent / "README.md").read_text()
    section = readme.split("## Sensitivity and sweeps", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "models").symlink_to(MODELS)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["ratios"] and all(0 < r < 1 for r in scope["ratios"].values())
    assert [row.ok for row in scope["report"].rows] == [True, True]
