"""Roofline estimate: each node costs the larger of its MACs at peak and its bytes at bandwidth."""

from __future__ import annotations

import onnx
import pytest

from onnxprune import prune
from onnxprune.bench import benchmark
from onnxprune.roofline import MachineBalance, machine_balance, roofline_us
from tests.conftest import ROOT


def _matmul(n: int) -> onnx.ModelProto:
    zeros = ",".join(["0"] * (8 * n))
    return onnx.parser.parse_model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8] x) => (float[1, {n}] z) <float[8, {n}] w = {{{zeros}}}>
        {{ y = MatMul(x, w)  z = Relu(y) }}"""
    )


def test_each_node_costs_the_larger_of_its_compute_and_its_memory_time():
    # MatMul: 32 MACs, (8 + 32 + 4) floats moved; Relu: 0 MACs, 8 floats moved
    compute_bound = MachineBalance(macs_per_us=1.0, bytes_per_us=1e9, threads=1)
    memory_bound = MachineBalance(macs_per_us=1e9, bytes_per_us=1.0, threads=1)
    assert roofline_us(_matmul(4), compute_bound) == pytest.approx(32.0, rel=1e-6)
    assert roofline_us(_matmul(4), memory_bound) == pytest.approx((44 + 8) * 4, rel=1e-6)


def test_halving_a_memory_bound_layer_does_not_halve_its_roofline_time():
    balance = MachineBalance(macs_per_us=1e9, bytes_per_us=1.0, threads=1)
    ratio = roofline_us(_matmul(8), balance) / roofline_us(_matmul(4), balance)
    assert 1.0 < ratio < 2.0  # the input row is read whatever the width


def test_the_machine_balance_is_measured_and_cached():
    balance = machine_balance(1)
    assert balance.macs_per_us > 0 and balance.bytes_per_us > 0
    assert machine_balance(1) is balance


def test_benchmark_reports_the_roofline_speedup_beside_the_macs_one(tmp_path):
    model = ROOT / "models/torchvision/mobilenet_v2_torchscript.onnx"
    pruned = prune(model, ratio=0.5).model
    report = benchmark(model, pruned, runs=2, warmup=1)
    assert 1.0 < report.roofline_speedup < report.ideal_speedup
    assert "roofline" in str(report)
