"""benchmark(): a small conv net against its hand-pruned version under ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxprune.bench import BenchmarkReport, LatencyStats, benchmark
from onnxprune.errors import UsageError

RUNS = 5


def conv_net(
    width: int,
    *,
    input_name: str = "x",
    elem: int = onnx.TensorProto.FLOAT,
    spatial: tuple[str | int, str | int] = (16, 16),
) -> onnx.ModelProto:
    """x[N,3,H,W] -> Conv 3x3 (width) -> Relu -> Conv 3x3 (width) -> Relu -> GAP -> Flatten -> Gemm(10).

    The weights of the narrower nets are the first `width` channels of the widest (16) one, as a
    hand-pruned copy would be.
    """
    rng = np.random.default_rng(0)
    full = {
        "w1": rng.standard_normal((16, 3, 3, 3)),
        "b1": rng.standard_normal(16),
        "w2": rng.standard_normal((16, 16, 3, 3)),
        "b2": rng.standard_normal(16),
        "fc_w": rng.standard_normal((10, 16)),
        "fc_b": rng.standard_normal(10),
    }
    kept = {
        "w1": full["w1"][:width],
        "b1": full["b1"][:width],
        "w2": full["w2"][:width, :width],
        "b2": full["b2"][:width],
        "fc_w": full["fc_w"][:, :width],
        "fc_b": full["fc_b"],
    }
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    initializers = [numpy_helper.from_array(a.astype(dtype), name) for name, a in kept.items()]
    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info(input_name, elem, ["N", 3, *spatial])],
        [helper.make_tensor_value_info("y", elem, ["N", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def macs_by_hand(width: int, batch: int, hw: int = 16) -> int:
    # conv1: batch*width*hw*hw outputs x 3*9; conv2: batch*width*hw*hw outputs x width*9; fc: batch*10*width
    return batch * width * hw * hw * 27 + batch * width * hw * hw * width * 9 + batch * 10 * width


@pytest.fixture(scope="module")
def pair_report() -> BenchmarkReport:
    return benchmark(conv_net(16), conv_net(8), runs=RUNS, warmup=1, batch=2)


def test_bench_two_models(pair_report: BenchmarkReport) -> None:
    report = pair_report
    assert report.models == ["<ModelProto>", "<ModelProto>"]
    assert report.input_shapes == {"x": [2, 3, 16, 16]}
    assert report.macs == [macs_by_hand(16, 2), macs_by_hand(8, 2)]
    assert report.params[0] > report.params[1] > 0
    assert report.size_bytes[0] > report.size_bytes[1] > 0
    assert [lat.runs for lat in report.latency] == [RUNS, RUNS]
    for lat in report.latency:
        assert 0 < lat.median_ms <= lat.p90_ms
        assert lat.mean_ms > 0
    assert report.speedup is not None and report.speedup > 0
    assert report.speedup == pytest.approx(report.latency[0].median_ms / report.latency[1].median_ms)
    assert report.ideal_speedup == pytest.approx(macs_by_hand(16, 2) / macs_by_hand(8, 2))
    assert report.realised_fraction == pytest.approx(report.speedup / report.ideal_speedup)
    assert report.session.provider == "CPUExecutionProvider"
    assert report.session.intra_op_threads == 2
    assert report.session.inter_op_threads == 1
    assert report.session.graph_optimization_level == "ORT_ENABLE_ALL"
    text = str(report)
    assert "speedup" in text and "ideal" in text and "realised" in text


def test_bench_json_round_trip(pair_report: BenchmarkReport) -> None:
    data = json.loads(json.dumps(pair_report.to_json()))
    assert data["latency"][0]["runs"] == RUNS
    rebuilt = BenchmarkReport.from_json(data)
    assert rebuilt == pair_report
    assert isinstance(rebuilt.latency[0], LatencyStats)


def test_bench_single_model_from_path(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(conv_net(8), path)
    report = benchmark(path, runs=RUNS, warmup=0, threads=1)
    assert report.models == [str(path)]
    assert len(report.latency) == 1 and report.latency[0].median_ms > 0
    assert report.macs == [macs_by_hand(8, 1)]
    assert report.speedup is None and report.ideal_speedup is None and report.realised_fraction is None
    assert report.session.intra_op_threads == 1
    json.dumps(report.to_json())
    assert "speedup" not in str(report)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (conv_net(8, input_name="image"), "input 'image' is only in"),
        (conv_net(8, elem=onnx.TensorProto.DOUBLE), "DOUBLE"),
        (conv_net(8, spatial=(32, 32)), "[?, 3, 32, 32]"),
        (conv_net(8, spatial=("H", "W")), "[?, 3, ?, ?]"),
    ],
    ids=["name", "element_type", "static_dim", "static_vs_dynamic"],
)
def test_bench_refuses_different_inputs(other: onnx.ModelProto, message: str) -> None:
    with pytest.raises(UsageError, match="inputs differ") as info:
        benchmark(conv_net(16), other, runs=1, warmup=0)
    assert message in str(info.value)


def test_bench_dynamic_spatial_dims_need_input_shapes() -> None:
    model = conv_net(16, spatial=("H", "W"))
    with pytest.raises(UsageError, match="input 'x' dim 2 is dynamic"):
        benchmark(model, runs=1, warmup=0)
    report = benchmark(
        model, conv_net(8, spatial=("h", "w")), runs=1, warmup=0, input_shapes={"x": [1, 3, 16, 16]}
    )
    assert report.input_shapes == {"x": [1, 3, 16, 16]}
    assert report.ideal_speedup == pytest.approx(macs_by_hand(16, 1) / macs_by_hand(8, 1))


@pytest.mark.parametrize(
    "options", [{"runs": 0}, {"warmup": -1}, {"threads": 0}, {"batch": 0}, {"runs": 2.5}], ids=str
)
def test_bench_refuses_bad_options(options: dict) -> None:
    with pytest.raises(UsageError):
        benchmark(conv_net(8), **options)


def test_bench_refuses_batch_on_static_model() -> None:
    model = conv_net(8)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    with pytest.raises(UsageError, match=r"no input .* has a dynamic dim 0"):
        benchmark(model, runs=1, warmup=0, batch=4)
