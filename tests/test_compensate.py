"""Compensation on tiny graphs: bias folding exact where removed channels are constant, lsq exact
where they are affine in the kept ones, data-free BatchNorm means, held-out revert, updates."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.compensate import compensate
from onnxprune.compensate.means import rectified_gaussian_mean
from onnxprune.errors import UsageError
from onnxprune.runtime import RandomLoader, ort_session
from onnxprune.weights import get_weight, set_weight

RNG = np.random.default_rng(0)


def build(nodes, weights: dict[str, np.ndarray], inputs, outputs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def sliced(original: onnx.ModelProto, keeps: dict) -> onnx.ModelProto:
    """The structural prune of `original`: every weight taken at its kept indices."""
    model = onnx.ModelProto()
    model.CopyFrom(original)
    names = {t.name for t in model.graph.initializer}
    for (name, axis), keep in keeps.items():
        if name in names:
            set_weight(model, name, np.take(get_weight(model, name), keep, axis=axis))
    return model


def run(model: onnx.ModelProto, feeds: list[dict]) -> np.ndarray:
    session = ort_session(model)
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def feeds_of(shape, count=12, seed=1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_valid(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    ort_session(model)


def changed_tensors(before: onnx.ModelProto, after: onnx.ModelProto) -> set[str]:
    old = {t.name: numpy_helper.to_array(t) for t in before.graph.initializer}
    new = {t.name: numpy_helper.to_array(t) for t in after.graph.initializer}
    return {
        k for k, v in new.items() if k not in old or v.shape != old[k].shape or not np.array_equal(v, old[k])
    }


# --- a Conv pair whose removed channels are constant (bias exact) -----------------------------

X4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])


def conv_pair(kernel: int, bias2: bool = True) -> tuple[onnx.ModelProto, dict]:
    w1 = RNG.standard_normal((6, 4, 1, 1))
    w1[4:] = 0.0  # channels 4 and 5 of h are their bias: constant
    b1 = RNG.standard_normal(6)
    w2 = RNG.standard_normal((3, 6, kernel, kernel))
    weights = {"w1": w1, "b1": b1, "w2": w2}
    conv2_in = ["h", "w2"]
    if bias2:
        weights["b2"] = RNG.standard_normal(3)
        conv2_in.append("b2")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="c1"),
        helper.make_node("Conv", conv2_in, ["y"], name="c2"),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "h", "w"])
    keep = np.arange(4)
    keeps = {("w1", 0): keep, ("b1", 0): keep, ("h", 1): keep, ("w2", 1): keep}
    return build(nodes, weights, [X4], [y]), keeps


@pytest.mark.parametrize(("kernel", "bias2"), [(1, True), (3, True), (3, False)])
def test_bias_is_exact_where_removed_channels_are_constant(kernel, bias2) -> None:
    original, keeps = conv_pair(kernel, bias2)
    pruned = sliced(original, keeps)
    structural = onnx.ModelProto()
    structural.CopyFrom(pruned)
    data = feeds_of([2, 4, 5, 5])
    assert rel(run(pruned, data), run(original, data)) > 1e-2
    report = compensate(original, pruned, keeps, data, method="bias")
    assert rel(run(pruned, data), run(original, data)) < 1e-5
    check_valid(pruned)
    bias_name = "b2" if bias2 else "w2_compensate_bias"
    assert [(u.tensor, u.shape, u.by) for u in report.updates] == [(bias_name, (3,), "compensate-bias")]
    assert changed_tensors(structural, pruned) == {bias_name}
    assert [r.applied for r in report.consumers] == ["bias"]


def gemm_model(op: str, trans_b: bool = True) -> tuple[onnx.ModelProto, dict]:
    """x[N, 4] -> MatMul(I-ish, 6 channels; 4 and 5 constant via an Add) -> h -> op -> y."""
    w1 = RNG.standard_normal((4, 6))
    w1[:, 4:] = 0.0
    b1 = RNG.standard_normal(6)
    w2 = RNG.standard_normal((3, 6)) if trans_b else RNG.standard_normal((6, 3))
    weights = {"w1": w1, "b1": b1, "w2": w2}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm1"),
        helper.make_node("Add", ["m", "b1"], ["h"], name="add1"),
    ]
    if op == "Gemm":
        weights["c2"] = RNG.standard_normal(3)
        nodes.append(
            helper.make_node(
                "Gemm", ["h", "w2", "c2"], ["y"], name="g2", transB=int(trans_b), alpha=0.5, beta=2.0
            )
        )
    else:
        nodes.append(helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    keep = np.arange(4)
    w2_axis = 1 if (op == "Gemm" and trans_b) else 0
    keeps = {("w1", 1): keep, ("b1", 0): keep, ("m", 1): keep, ("h", 1): keep, ("w2", w2_axis): keep}
    return build(nodes, weights, [x], [y]), keeps


@pytest.mark.parametrize(("op", "trans_b"), [("Gemm", True), ("Gemm", False), ("MatMul", False)])
def test_bias_exact_on_gemm_and_matmul(op, trans_b) -> None:
    original, keeps = gemm_model(op, trans_b)
    pruned = sliced(original, keeps)
    data = feeds_of([3, 4])
    report = compensate(original, pruned, keeps, data, method="bias")
    assert rel(run(pruned, data), run(original, data)) < 1e-5
    check_valid(pruned)
    assert len(report.updates) == 1
    if op == "MatMul":  # an Add with a new bias was inserted after the MatMul; y is still y
        adds = [n for n in pruned.graph.node if n.op_type == "Add" and n.output[0] == "y"]
        assert len(adds) == 1 and adds[0].input[1] == report.updates[0].tensor
        assert report.updates[0].tensor not in {t.name for t in original.graph.initializer}


# --- lsq: removed channels affine in the kept ones (two levels) --------------------------------


def affine_chain() -> tuple[onnx.ModelProto, dict]:
    """x -> c1 -> h (6; 4, 5 affine in 0..3) -> c2 -> g (5; 3, 4 affine in 0..2) -> c3 -> y."""
    w1 = RNG.standard_normal((6, 4, 1, 1))
    b1 = RNG.standard_normal(6)
    w1[4], b1[4] = 0.7 * w1[0] - 1.2 * w1[1], 0.7 * b1[0] - 1.2 * b1[1] + 0.3
    w1[5], b1[5] = 0.5 * w1[2] + w1[3], 0.5 * b1[2] + b1[3] - 2.0
    w2 = RNG.standard_normal((5, 6, 1, 1))
    b2 = RNG.standard_normal(5)
    w2[3], b2[3] = 1.5 * w2[0] + 0.2 * w2[2], 1.5 * b2[0] + 0.2 * b2[2] + 1.0
    w2[4], b2[4] = -w2[1], -b2[1]
    w3 = RNG.standard_normal((2, 5, 3, 3))
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="c1"),
        helper.make_node("Conv", ["h", "w2", "b2"], ["g"], name="c2"),
        helper.make_node("Conv", ["g", "w3"], ["y"], name="c3"),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "h", "w"])
    k4, k3 = np.arange(4), np.arange(3)
    keeps = {
        ("w1", 0): k4,
        ("b1", 0): k4,
        ("h", 1): k4,
        ("w2", 1): k4,
        ("w2", 0): k3,
        ("b2", 0): k3,
        ("g", 1): k3,
        ("w3", 1): k3,
    }
    return build(nodes, weights, [X4], [y]), keeps


def test_lsq_is_exact_where_removed_channels_are_affine_in_kept_ones() -> None:
    original, keeps = affine_chain()
    pruned = sliced(original, keeps)
    structural = onnx.ModelProto()
    structural.CopyFrom(pruned)
    data = feeds_of([2, 4, 5, 5], count=16)
    test = feeds_of([2, 4, 5, 5], count=4, seed=7)
    assert rel(run(pruned, test), run(original, test)) > 1e-1
    report = compensate(original, pruned, keeps, data, method="lsq")
    assert rel(run(pruned, test), run(original, test)) < 1e-4
    check_valid(pruned)
    assert [(r.node, r.applied, r.level) for r in report.consumers] == [("c2", "lsq", 0), ("c3", "lsq", 1)]
    listed = {u.tensor: u for u in report.updates}
    assert set(listed) == changed_tensors(structural, pruned)
    for name, update in listed.items():
        assert update.shape == get_weight(pruned, name).shape and update.by == "compensate-lsq"
    assert report.consumers[0].error_after < 1e-6 < report.consumers[0].error_before


def test_lsq_needs_data_and_methods_are_checked() -> None:
    original, keeps = affine_chain()
    with pytest.raises(UsageError):
        compensate(original, sliced(original, keeps), keeps, None, method="lsq")
    with pytest.raises(UsageError):
        compensate(original, sliced(original, keeps), keeps, None, method="ridge")  # type: ignore[arg-type]


# --- held-out revert ----------------------------------------------------------------------------


def test_a_compensation_that_hurts_held_out_samples_is_reverted() -> None:
    """The removed channel is +5 on the calibration data and -5 on the held-out data."""
    original, keeps = gemm_model("Gemm")
    # make h's channel 4 follow x's channel 3 (h4 = 2 * x3) instead of being constant
    w1 = get_weight(original, "w1").copy()
    w1[3, 4] = 2.0
    set_weight(original, "w1", w1)
    b1 = get_weight(original, "b1").copy()
    b1[4] = 0.0
    set_weight(original, "b1", b1)

    def feeds(sign, seed):
        out = feeds_of([3, 4], count=8, seed=seed)
        for f in out:
            f["x"][:, 3] = sign * 2.5
        return out

    for method in ("bias", "lsq"):
        pruned = sliced(original, keeps)
        report = compensate(original, pruned, keeps, feeds(1, 1), method=method, holdout=feeds(-1, 2))
        assert report.updates == [] and [r.applied for r in report.consumers] == [None]
        assert "reverted" in report.consumers[0].reason
        # the same data as calibration and held-out: kept
        pruned = sliced(original, keeps)
        report = compensate(original, pruned, keeps, feeds(1, 1), method=method, holdout=feeds(1, 2))
        assert report.consumers[0].applied is not None
        assert report.consumers[0].error_after < 1e-6 < report.consumers[0].error_before


# --- data-free BatchNorm means ----------------------------------------------------------------


def conv_bn_relu_conv() -> tuple[onnx.ModelProto, dict]:
    c = 8
    w1 = RNG.standard_normal((c, 4, 1, 1))
    var = np.square(w1).sum(axis=(1, 2, 3))  # the variance of conv1's output on N(0, 1) inputs
    weights = {
        "w1": w1,
        "gamma": RNG.uniform(0.5, 1.5, c),
        "beta": RNG.uniform(-1.0, 2.0, c),
        "mean": np.zeros(c),
        "var": var,
        "w2": RNG.standard_normal((3, c, 3, 3)),
        "b2": np.zeros(3),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        helper.make_node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["bn"], name="bn1"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="c2"),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "h", "w"])
    keep = np.array([0, 2, 3, 5, 7])
    keeps = {(n, 0): keep for n in ("w1", "gamma", "beta", "mean", "var")}
    keeps |= {("a", 1): keep, ("bn", 1): keep, ("r", 1): keep, ("w2", 1): keep}
    return build(nodes, weights, [X4], [y]), keeps


def test_data_free_bias_from_batchnorm_improves_the_output() -> None:
    original, keeps = conv_bn_relu_conv()
    pruned = sliced(original, keeps)
    data = feeds_of([4, 4, 5, 5], count=4, seed=3)
    before = rel(run(pruned, data), run(original, data))
    report = compensate(original, pruned, keeps, None, method="bias")
    after = rel(run(pruned, data), run(original, data))
    assert after < 0.8 * before, (before, after)
    assert [(u.tensor, u.by) for u in report.updates] == [("b2", "compensate-bias")]
    assert report.consumers[0].reason == "data-free"
    check_valid(pruned)


def test_data_free_skips_consumers_whose_means_are_unknown() -> None:
    original, keeps = affine_chain()
    pruned = sliced(original, keeps)
    report = compensate(original, pruned, keeps, None, method="bias")
    assert report.updates == [] and all(r.applied is None for r in report.consumers)
    assert all("unknown" in r.reason for r in report.consumers)


def test_rectified_gaussian_mean_matches_sampling() -> None:
    samples = np.maximum(np.random.default_rng(0).normal(0.4, 1.3, 2_000_000), 0.0)
    assert rectified_gaussian_mean(np.array([0.4]), np.array([1.3]))[0] == pytest.approx(
        samples.mean(), abs=2e-3
    )


def test_random_loader_and_single_feed() -> None:
    original, keeps = conv_pair(1)
    pruned = sliced(original, keeps)
    data = RandomLoader(seeds=(0,), batch=2, input_shapes={"x": [2, 4, 5, 5]})
    report = compensate(original, pruned, keeps, data, method="lsq")
    assert report.consumers[0].applied is not None
    assert rel(run(pruned, feeds_of([2, 4, 5, 5])), run(original, feeds_of([2, 4, 5, 5]))) < 1e-4


# --- token models: padded positions are left out -------------------------------------------


def token_model() -> tuple[onnx.ModelProto, dict]:
    """x[B, S, 4] -> MatMul + Add -> h (6; 4, 5 copy x's channel 3) -> MatMul -> y; a mask input."""
    w1 = RNG.standard_normal((4, 6))
    w1[:, 4:] = 0.0
    w1[3, 4], w1[3, 5] = 1.0, -2.0
    weights = {"w1": w1, "b1": RNG.standard_normal(6), "w2": RNG.standard_normal((6, 3))}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m"], name="mm1"),
        helper.make_node("Add", ["m", "b1"], ["h"], name="add1"),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2"),
        helper.make_node("Identity", ["attention_mask"], ["mask_out"], name="id"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 4])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "S"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", 3])
    mask_out = helper.make_tensor_value_info("mask_out", TensorProto.INT64, ["B", "S"])
    keep = np.arange(4)
    keeps = {("w1", 1): keep, ("b1", 0): keep, ("m", 2): keep, ("h", 2): keep, ("w2", 0): keep}
    return build(nodes, weights, [x, mask], [y, mask_out]), keeps


def test_padded_tokens_are_left_out_of_the_statistics() -> None:
    """x's channel 3 is 1.5 on real tokens and large noise on padding: the mean over real tokens
    makes the bias exact there."""
    original, keeps = token_model()
    rng = np.random.default_rng(4)
    feeds = []
    for _ in range(8):
        x = rng.standard_normal((2, 6, 4)).astype(np.float32)
        mask = np.ones((2, 6), np.int64)
        mask[0, 4:] = 0
        x[..., 3] = np.where(mask == 1, 1.5, 40.0 * rng.standard_normal((2, 6)))
        feeds.append({"x": x, "attention_mask": mask})
    pruned = sliced(original, keeps)
    report = compensate(original, pruned, keeps, feeds, method="bias")
    assert report.consumers[0].applied == "bias"
    real = np.concatenate([f["attention_mask"] for f in feeds]).reshape(-1) == 1
    got, want = run(pruned, feeds).reshape(-1, 3)[real], run(original, feeds).reshape(-1, 3)[real]
    assert rel(got, want) < 1e-5


# --- Conv borders: the bias is the least-squares constant over positions -------------------


def test_tap_coverage() -> None:
    from onnxprune.compensate.taps import coverage

    assert coverage({"pads": [1, 1]}, (3,), (4,)).tolist() == [0.75, 1.0, 0.75]
    assert coverage({}, (3, 3), (5, 5)).tolist() == [1.0] * 9
    same = coverage({"auto_pad": b"SAME_UPPER", "strides": [2]}, (3,), (5,))
    assert same.round(4).tolist() == [0.6667, 1.0, 0.6667]
    assert coverage({"pads": [1, 1]}, (3,), None).tolist() == [1.0] * 3


def test_padded_conv_bias_matches_the_output_mean_per_channel() -> None:
    original, keeps = conv_pair(3)
    original.graph.node[1].attribute.extend([helper.make_attribute("pads", [1, 1, 1, 1])])
    original.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 5
    pruned = sliced(original, keeps)
    data = feeds_of([2, 4, 5, 5])
    compensate(original, pruned, keeps, data, method="bias")
    got, want = run(pruned, data), run(original, data)
    assert np.allclose(got.mean(axis=(0, 2, 3)), want.mean(axis=(0, 2, 3)), atol=1e-5)
    assert not np.allclose(got, want, atol=1e-3)  # position by position it is not exact


def test_data_free_means_after_clip_relu6() -> None:
    from onnxprune.compensate.means import channel_means

    original, _ = conv_bn_relu_conv()
    relu = original.graph.node[2]
    relu.op_type = "Clip"
    relu.input.extend(["lo", "hi"])
    original.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(1.0), "hi")]
    )
    beta, gamma = get_weight(original, "beta"), get_weight(original, "gamma")
    samples = np.clip(np.random.default_rng(0).normal(beta, gamma, (400_000, 8)), 0.0, 1.0)
    assert np.allclose(channel_means(original, "r", 8), samples.mean(axis=0), atol=3e-3)


def test_held_out_error_is_accurate_on_activations_with_large_means() -> None:
    """The moments of [x; x'] around means of 1e6 still give the residual of a map exactly."""
    from onnxprune.compensate.solve import AffineMap, PairStats, output_error, ridge_map

    rng = np.random.default_rng(0)
    xp = 1e6 + rng.standard_normal((500, 3))
    x = np.concatenate([xp, xp @ rng.standard_normal((3, 2)) + 0.01 * rng.standard_normal((500, 2))], axis=1)
    pair = PairStats.of(x, xp)
    kept = np.arange(3)
    weighting = np.eye(5)
    for affine in (
        ridge_map(pair, kept, 0.0),
        ridge_map(pair, kept, 1e-3),
        AffineMap(np.ones((5, 3)), np.zeros(5)),
    ):
        residual = x - xp @ affine.M.T - affine.m
        direct = float(np.mean(np.sum(residual * residual, axis=1)))
        assert output_error(pair, affine, weighting)[0] == pytest.approx(direct, rel=1e-6, abs=1e-6)
