"""Calibration: data split, which activations are measured, activation-aware scores, and the
calibrated prune end to end (API and CLI)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.calibration import (
    CountingLoader,
    SplitLoader,
    calibration_data,
    collect_activation_stats,
    weight_inputs,
)
from onnxprune.cli import main
from onnxprune.data import open_data
from onnxprune.errors import EXIT_USAGE, UsageError
from onnxprune.runtime import run_with_outputs
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import Normalize, run_stages
from tests.conftest import MODELS

DEFAULT = MODELS / "default.onnx"


def _images(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)}


def _gemm_chain(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray) -> onnx.ModelProto:
    """x [N, 4] -> Gemm(w1, b1) -> Relu -> h [N, C] -> Gemm(w2) -> y [N, 3]."""
    c = w1.shape[1]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], name="fc1"),
            helper.make_node("Relu", ["a"], ["h"], name="relu"),
            helper.make_node("Gemm", ["h", "w2"], ["y"], name="fc2"),
        ],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert c == w2.shape[0]
    return model


def test_the_split_is_deterministic_disjoint_and_complete():
    feeds = [{"x": np.full((1, 2), i, np.float32)} for i in range(12)]
    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17]> g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }'
    )
    fit = [int(f["x"][0, 0]) for f in SplitLoader(open_data(feeds), 4, held_out=False).feeds(model)]
    held = [int(f["x"][0, 0]) for f in SplitLoader(open_data(feeds), 4, held_out=True).feeds(model)]
    assert held == [3, 7, 11]
    assert sorted(fit + held) == list(range(12)) and not set(fit) & set(held)


def test_calibration_data_options():
    data = calibration_data(iter([{"x": np.zeros((1, 2), np.float32)}] * 5), holdout=0.5)
    assert isinstance(data.fit, SplitLoader) and data.fit.period == 2  # the iterator became a list
    assert calibration_data(_images(4), holdout=0.0).holdout is None
    assert calibration_data(_images(4), eval_data=_images(2)).holdout.source == "<arrays>"
    with pytest.raises(UsageError, match=r"holdout 1\.0"):
        calibration_data(_images(4), holdout=1.0)


def test_weight_inputs_name_the_activation_each_weight_multiplies():
    inputs = weight_inputs(_gemm_chain(np.ones((4, 5)), np.zeros(5), np.ones((5, 3))))
    assert {w: (i.activation, i.weight_axis, i.activation_axis) for w, i in inputs.items()} == {
        "w1": ("x", 0, 1),
        "w2": ("h", 0, 1),
    }


def test_activation_statistics_are_those_of_the_activations_themselves():
    analysis = onnxprune.analyze(DEFAULT)
    normalized = _normalized(DEFAULT)
    stats = collect_activation_stats(normalized, analysis, open_data(_images(16), batch=4))
    assert stats.feeds == 4 and stats.samples == 16 and stats.channels
    name, channel = next(iter(stats.channels.items()))
    values = np.concatenate(
        [v[name] for v in run_with_outputs(normalized, [name], open_data(_images(16), batch=4))]
    )
    np.testing.assert_allclose(channel.mean, values.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def _normalized(path) -> onnx.ModelProto:
    return run_stages(PruneSession.open(path, PruneOptions(None)), [Normalize()]).model


def test_activation_energy_is_the_output_energy_a_channel_carries():
    rng = np.random.default_rng(1)
    w1, b1, w2 = rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal((6, 3))
    model = _gemm_chain(w1, b1, w2)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    result = onnxprune.prune(model, ratio=0.5, round_to=1, calibration={"x": x}, holdout=0.0)
    h = np.maximum(x @ w1 + b1, 0)
    energy = (h**2).mean(axis=0) * (w2**2).sum(axis=1)  # E[‖h_c w2[c, :]‖²]
    (group,) = result.plan.groups
    np.testing.assert_array_equal(group.keep, np.sort(np.argsort(-energy)[:3]))


def test_a_channel_that_is_always_zero_goes_first_whatever_its_weights():
    """Magnitude keeps the channel whose weights are largest; on data, that channel is dead (its
    pre-activation is always negative), so activation-aware scores drop it."""
    rng = np.random.default_rng(2)
    w1, b1 = rng.standard_normal((4, 4)) * 0.1, np.zeros(4)
    b1[0] = -100.0  # channel 0 never passes the Relu
    w2 = rng.standard_normal((4, 3)) * 0.1
    w1[:, 0] *= 100
    w2[0] *= 100
    model = _gemm_chain(w1, b1, w2)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    by_magnitude = onnxprune.prune(model, ratio=0.25, round_to=1)
    assert 0 in by_magnitude.plan.groups[0].keep
    by_data = onnxprune.prune(model, ratio=0.25, round_to=1, calibration={"x": x})
    assert 0 not in by_data.plan.groups[0].keep
    assert by_data.report.criterion == "activation"
    assert by_data.report.fidelity["outputs"][0]["cosine"] > 0.999999


@pytest.mark.parametrize("criterion", ["activation", "fluctuation"])
def test_calibrated_prunes_stay_mask_equivalent(criterion):
    result = onnxprune.prune(
        DEFAULT, ratio=0.4, calibration=_images(40), criterion=criterion, compensate="none"
    )
    assert result.structural is None and not result.plan.updates
    assert onnxprune.validate(DEFAULT, result.model, result.plan)
    assert result.report.calibration["samples"] == 32  # 4 of every 5 feeds of 8
    assert result.report.fidelity["feeds"] == 1


def test_progress_counts_every_calibration_sample():
    seen: list[int] = []
    onnxprune.prune(DEFAULT, ratio=0.4, calibration=_images(20), holdout=0.0, progress=seen.append)
    assert sum(seen) == 20


def test_sample_limit():
    result = onnxprune.prune(DEFAULT, ratio=0.4, calibration=_images(40), calibration_samples=16, holdout=0.0)
    assert result.report.calibration["samples"] == 16 and result.report.fidelity is None


def test_counting_loader_counts_feeds_and_samples():
    model = onnx.load(DEFAULT)
    counted = CountingLoader(open_data(_images(10), batch=4))
    assert len(list(counted.feeds(model))) == 3
    assert (counted.fed, counted.samples) == (3, 10)


def test_cli_calibrated_prune(tmp_path, capsys):
    data = tmp_path / "calib.npz"
    np.savez(data, **_images(40))
    out = tmp_path / "out.onnx"
    assert main([str(DEFAULT), str(out), "--ratio", "0.4", "--calib", str(data), "--validate"]) == 0
    text = capsys.readouterr().out
    assert "calibration: 32 samples" in text and "criterion activation" in text
    assert "fidelity to the input" in text and "cosine" in text and "validation passed" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eval-data", "x.npz"], "need --calib"),
        (["--calib", "no/such.npz"], "no/such.npz: no such file"),
        (["--criterion", "fluctuation"], "needs calibration data"),
    ],
)
def test_cli_calibration_usage_errors(args, message, tmp_path, capsys):
    assert main([str(DEFAULT), str(tmp_path / "o.onnx"), "--ratio", "0.4", *args]) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()


def test_calibration_data_for_an_unknown_input_is_refused_naming_it(tmp_path, capsys):
    data = tmp_path / "bad.npz"
    np.savez(data, pixels=np.zeros((4, 3, 32, 32), np.float32))
    assert (
        main([str(DEFAULT), str(tmp_path / "o.onnx"), "--ratio", "0.4", "--calib", str(data)]) == EXIT_USAGE
    )
    err = capsys.readouterr().err
    assert "'pixels' is not a graph input" in err and str(data) in err


def _token_model() -> onnx.ModelProto:
    """ids [B, S] -> Gather(embedding [10, 4]) -> [B, S, 4] -> MatMul(w [4, 6]) -> Relu -> MatMul
    (v [6, 2]); `attention_mask` [B, S] marks real tokens (read by nothing, as in a model whose
    masking happens elsewhere)."""
    rng = np.random.default_rng(3)
    weights = {
        "embedding": rng.standard_normal((10, 4)),
        "w": rng.standard_normal((4, 6)),
        "v": rng.standard_normal((6, 2)),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "ids"], ["e"], name="embed"),
            helper.make_node("MatMul", ["e", "w"], ["a"], name="up"),
            helper.make_node("Relu", ["a"], ["h"], name="act"),
            helper.make_node("MatMul", ["h", "v"], ["y"], name="down"),
        ],
        "tokens",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "S"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "S"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", 2])],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_padded_tokens_are_left_out_of_the_statistics():
    model = _token_model()
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 0]], np.int64)  # 0 is the padding id
    mask = (ids != 0).astype(np.int64)
    analysis = onnxprune.analyze(model)
    data = open_data({"ids": ids, "attention_mask": mask}, batch=2)
    stats = collect_activation_stats(_normalized(model), analysis, data)
    h = np.maximum(onnx.numpy_helper.to_array(model.graph.initializer[0])[ids] @ _weight(model, "w"), 0)
    real = h[mask.astype(bool)]
    np.testing.assert_allclose(stats.channels["h"].mean, real.mean(axis=0), rtol=1e-5)
    assert stats.channels["h"].count == 5  # five real tokens, not eight positions


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


# --- compensation through the pipeline ----------------------------------------------------------


@pytest.mark.parametrize("method", ["bias", "lsq"])
def test_compensated_prune_validates_in_two_steps(method):
    result = onnxprune.prune(DEFAULT, ratio=0.4, calibration=_images(40), compensate=method)
    updated = {u.tensor for u in result.plan.updates}
    # lsq may settle for the bias alone on a consumer (one of its candidates), and says so
    kinds = {u.by for u in result.plan.updates}
    assert updated and f"compensate-{method}" in kinds and kinds <= {"compensate-bias", "compensate-lsq"}
    assert result.report.compensation["method"] == method
    assert result.report.compensation["tensors_updated"] == len(updated)
    before, after = result.report.structural_fidelity, result.report.fidelity
    assert before["source"] == after["source"] and before["feeds"] == after["feeds"] == 1
    report = onnxprune.validate(DEFAULT, result.model, result.plan, structural=result.structural)
    assert report, str(report)
    assert report.parity.subject == "structural prune"
    # without the structural model, parity cannot be claimed
    assert not onnxprune.validate(DEFAULT, result.model, result.plan)


def test_lsq_is_the_default_with_data_and_none_without():
    with_data = onnxprune.prune(DEFAULT, ratio=0.4, calibration=_images(24))
    assert with_data.report.compensation["method"] == "lsq"
    without = onnxprune.prune(DEFAULT, ratio=0.4)
    assert without.report.compensation is None and without.structural is None


def test_bias_compensation_without_data_uses_batchnorm():
    result = onnxprune.prune(DEFAULT, ratio=0.4, compensate="bias")
    assert result.report.compensation["method"] == "bias"
    report = onnxprune.validate(DEFAULT, result.model, result.plan, structural=result.structural)
    assert report, str(report)


def test_lsq_without_data_and_unknown_methods_are_refused():
    with pytest.raises(UsageError, match="lsq compensation needs calibration data"):
        onnxprune.prune(DEFAULT, ratio=0.4, compensate="lsq")
    with pytest.raises(UsageError, match="'ridge' is not one of none, bias, lsq"):
        onnxprune.prune(DEFAULT, ratio=0.4, compensate="ridge")


def test_cli_compensated_prune_validates(tmp_path, capsys):
    data = tmp_path / "calib.npz"
    np.savez(data, **_images(40))
    out, plan = tmp_path / "out.onnx", tmp_path / "plan.json"
    args = [str(DEFAULT), str(out), "--ratio", "0.4", "--calib", str(data), "--validate", "--plan", str(plan)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "compensation lsq:" in text and "parity ok: structural prune" in text
    assert "fidelity to the input (structural prune, before compensation)" in text
    assert '"updates"' in plan.read_text()
