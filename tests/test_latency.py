"""The measured latency model: fitted on ONNX Runtime profiles, cached by node signature."""

from __future__ import annotations

import json

import pytest

from onnxprune.latency import LatencyCost, MeasureSettings
from onnxprune.latency_cache import LatencyCache, node_signature
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import Analyze, Normalize, run_stages, uniform_prune
from onnxprune.targets import UniformRatio
from tests.conftest import ROOT

MODEL = ROOT / "models/torchvision/resnet18_dynamo.onnx"


@pytest.fixture
def normalized():
    session = PruneSession.open(MODEL, PruneOptions(UniformRatio(0.5)))
    run_stages(session, [Normalize(), Analyze()])
    return session


def _build(session, calls):
    def prune_at(ratio):
        calls.append(ratio)
        return uniform_prune(session.model, ratio, session.options)

    settings = MeasureSettings(threads=1, runs=3, warmup=1)
    return LatencyCost.build(session.model, session.analysis, None, settings, prune_at)


def test_latency_is_measured_at_every_width_then_read_from_the_cache(normalized, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE_DIR", str(tmp_path))
    calls: list[float] = []
    first = _build(normalized, calls)
    assert calls == [0.25, 0.5, 0.75]
    files = list(tmp_path.glob("latency-ort*.json"))
    assert len(files) == 1 and all(k.startswith("t1|") for k in json.loads(files[0].read_text()))
    again = _build(normalized, calls)
    assert calls == [0.25, 0.5, 0.75]  # nothing pruned or profiled the second time
    assert again.full == pytest.approx(first.full, rel=0.1)  # alike nodes share the last measured time


def test_predicted_latency_falls_as_groups_shrink(normalized, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE_DIR", "off")
    costs = _build(normalized, [])
    groups = normalized.analysis.prunable_groups
    half = {g.id: g.size // 2 for g in groups}
    quarter = {g.id: max(g.size // 4, 1) for g in groups}
    assert costs.fraction({}) == pytest.approx(1.0)
    assert 0 < costs.fraction(quarter) < costs.fraction(half) < 1.0


def test_node_signatures_name_op_attributes_and_shapes():
    import onnx

    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])
    other = onnx.helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    shapes = {"x": [1, 8, 4, 4], "w": [16, 8, 3, 3], "y": [1, 16, 2, 2]}
    assert node_signature(node, shapes).startswith(":Conv|")
    assert "1x8x4x4;16x8x3x3|1x16x2x2" in node_signature(node, shapes)
    assert node_signature(node, shapes) != node_signature(other, shapes)


def test_a_damaged_cache_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE_DIR", str(tmp_path))
    cache = LatencyCache.open(threads=2)
    cache.path.write_text("{not json")
    assert LatencyCache.open(threads=2).lookup(["anything"]) is None
