"""Weight sparsity on tiny graphs: per layer, global, N:M, exclusions, Wanda scores, the
combination with channel pruning and compensation, sparse initializers, usage errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.errors import UsageError
from onnxprune.plan import Plan, TensorUpdate
from onnxprune.runtime import ort_session
from onnxprune.sparsity import SparsityOptions, nm_violations, parse_nm, sparsify, sparsity_targets
from onnxprune.sparsity.layout import reduction_rows
from onnxprune.sparsity.masks import global_masks, layer_mask, nm_mask
from onnxprune.sparsity.run import merge_updates
from onnxprune.sparsity.storage import densified
from onnxprune.validate import validate
from onnxprune.weights import get_weight
from tests.conftest import ROOT
from tests.sparsity_graphs import cnn, mlp

ALL = "no node is called this"  # an --exclude that leaves every layer to sparsify


def _changed(original: onnx.ModelProto, pruned: onnx.ModelProto, name: str) -> np.ndarray:
    """Which entries of weight `name` differ (shapes equal: no structural prune)."""
    return get_weight(original, name) != get_weight(pruned, name)


# ------------------------------------------------------------------------------ layout


def test_targets_and_reduction_axes() -> None:
    targets = sparsity_targets(cnn())
    assert {n: (t.op_type, t.axis) for n, t in targets.items()} == {
        "conv1.w": ("Conv", 1),
        "conv2.w": ("Conv", 1),
        "conv3.w": ("Conv", 1),
        "fc.w": ("Gemm", 1),  # transB: [N, K]
    }
    assert {n: t.axis for n, t in sparsity_targets(mlp()).items()} == {"w1": 0, "w2": 0, "w3": 0}


def test_masks_zero_the_smallest() -> None:
    scores = np.array([[4.0, 1.0, 3.0], [2.0, 6.0, 5.0]])
    assert layer_mask(scores, 0.5).tolist() == [[True, False, False], [False, True, True]]
    masks = global_masks({"a": np.array([1.0, 9.0]), "b": np.array([2.0, 3.0, 8.0, 7.0])}, 0.5)
    assert masks["a"].tolist() == [False, True] and masks["b"].tolist() == [False, False, True, True]
    keep = nm_mask(np.array([[1.0, 5.0], [4.0, 2.0], [3.0, 7.0], [8.0, 6.0]]), 0, 2, 4)
    assert keep.tolist() == [[False, False], [True, False], [False, True], [True, True]]


# ------------------------------------------------------------------------------ per layer, global


def test_per_layer_zeroes_round_ratio_of_each_weight_smallest_first() -> None:
    original = cnn()
    result = onnxprune.prune(original, sparsity=0.3, exclude=ALL)
    assert not result.plan.slices  # sparsity alone: no structural prune
    for name in ("conv1.w", "conv2.w", "conv3.w", "fc.w"):
        before, after = get_weight(original, name), get_weight(result.model, name)
        zeroed = after == 0
        assert zeroed.sum() == round(0.3 * before.size)  # torch.nn.utils.prune.l1_unstructured's count
        assert np.abs(before[zeroed]).max() < np.abs(before[~zeroed]).min()  # the smallest |W|
        assert np.array_equal(after[~zeroed], before[~zeroed])  # the rest untouched
    layers = {layer["tensor"]: layer for layer in result.report.sparsity["layers"]}
    assert layers["conv2.w"]["zeros"] == round(0.3 * 16 * 16 * 9)
    assert all(u.by == "sparsity" for u in result.plan.updates)
    assert {u.tensor for u in result.plan.updates} == set(layers)


def test_global_threshold_is_shared_by_all_layers() -> None:
    original = mlp(scales=(0.1, 1.0, 1.0))  # w1 is ten times smaller: global scope zeroes it most
    result = onnxprune.prune(original, sparsity=0.5, sparsity_scope="global", exclude=ALL)
    names = ("w1", "w2", "w3")
    before = {n: get_weight(original, n) for n in names}
    zeroed = {n: get_weight(result.model, n) == 0 for n in names}
    total = sum(b.size for b in before.values())
    assert sum(int(z.sum()) for z in zeroed.values()) == round(0.5 * total)
    largest_zeroed = max(np.abs(before[n][zeroed[n]]).max(initial=0) for n in names)
    smallest_kept = min(np.abs(before[n][~zeroed[n]]).min(initial=np.inf) for n in names)
    assert largest_zeroed < smallest_kept
    per_layer = {layer["tensor"]: layer["sparsity"] for layer in result.report.sparsity["layers"]}
    assert per_layer["w1"] > 0.9 and per_layer["w2"] < 0.5
    assert result.report.sparsity["sparsity"] == pytest.approx(round(0.5 * total) / total)


# ------------------------------------------------------------------------------ N:M


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_nm_pattern_holds_and_keeps_the_largest(n: int, m: int) -> None:
    original = cnn()
    result = onnxprune.prune(original, nm=f"{n}:{m}", exclude=ALL)
    sparsified = {u.tensor for u in result.plan.updates}
    assert sparsified == {"conv1.w", "conv2.w", "conv3.w", "fc.w"}  # 8, 16, 16, 8 input channels
    for name, target in sparsity_targets(result.model).items():
        after, before = get_weight(result.model, name), get_weight(original, name)
        assert nm_violations(after, target.axis, n, m) == 0
        rows_b = reduction_rows(before, target.axis).reshape(-1, m)
        rows_a = reduction_rows(after, target.axis).reshape(-1, m)
        assert np.all(np.count_nonzero(rows_a, axis=1) == n)
        kept_min = np.where(rows_a != 0, np.abs(rows_b), np.inf).min(axis=1)
        dropped_max = np.where(rows_a == 0, np.abs(rows_b), -np.inf).max(axis=1)
        assert np.all(dropped_max < kept_min)
    assert {u.by for u in result.plan.updates} == {f"sparsity-{n}:{m}"}


def test_nm_groups_run_along_input_channels_of_a_conv() -> None:
    result = onnxprune.prune(cnn(), nm="2:4", exclude=ALL)
    w = get_weight(result.model, "conv2.w")  # [O, C, kh, kw]: every 4 input channels of one (o, kh, kw)
    groups = np.moveaxis(w, 1, -1).reshape(16, 3, 3, 4, 4)
    assert np.all(np.count_nonzero(groups, axis=-1) == 2)


def test_nm_leaves_a_weight_whose_reduction_is_not_a_multiple_dense() -> None:
    result = onnxprune.prune(cnn(), nm="2:16", exclude=ALL)  # conv1 reads 8 channels, fc 8
    dense = " ".join(result.report.sparsity["dense"])
    assert "conv1.w (conv1): reduction length 8 is not a multiple of 16" in dense
    assert {u.tensor for u in result.plan.updates} == {"conv2.w", "conv3.w"}


# ------------------------------------------------------------------------------ exclusions


def test_first_and_last_layers_stay_dense_by_default() -> None:
    original = cnn()
    result = onnxprune.prune(original, sparsity=0.5)
    assert {u.tensor for u in result.plan.updates} == {"conv2.w", "conv3.w"}
    for name in ("conv1.w", "fc.w"):
        assert not _changed(original, result.model, name).any()
    assert any(d.startswith("conv1.w: first layer") for d in result.report.sparsity["dense"])
    assert any(d.startswith("fc.w: last layer") for d in result.report.sparsity["dense"])


def test_exclude_names_exactly_the_dense_layers() -> None:
    original = cnn()
    result = onnxprune.prune(original, sparsity=0.5, exclude="^conv2$")
    assert {u.tensor for u in result.plan.updates} == {"conv1.w", "conv3.w", "fc.w"}
    assert not _changed(original, result.model, "conv2.w").any()
    assert "conv2.w (conv2): excluded by --exclude" in result.report.sparsity["dense"]


# ------------------------------------------------------------------------------ Wanda


def test_wanda_scores_weights_by_the_norm_of_their_input_channel() -> None:
    original = mlp()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    x[:, :4] *= 50.0  # the first four input channels are loud: their weights matter most
    plain = onnxprune.prune(original, sparsity=0.5, exclude="mm2|mm3")
    calibrated = onnxprune.prune(
        original, sparsity=0.5, exclude="mm2|mm3", calibration={"x": x}, holdout=0.0, compensate="none"
    )
    assert calibrated.report.sparsity["layers"][0]["criterion"] == "wanda"
    assert plain.report.sparsity["layers"][0]["criterion"] == "magnitude"
    w1 = get_weight(original, "w1")
    norms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=0))
    expected = layer_mask(np.abs(w1) * norms[:, None], 0.5)
    assert np.array_equal(get_weight(calibrated.model, "w1") != 0, expected)
    assert np.all(get_weight(calibrated.model, "w1")[:4] != 0)  # the loud channels' rows all kept
    assert not np.array_equal(get_weight(plain.model, "w1") != 0, expected)


# ------------------------------------------------------------------------------ with channel pruning


def test_structural_first_then_sparsity_on_what_remains() -> None:
    original = cnn()
    result = onnxprune.prune(original, ratio=0.5, round_to=1, sparsity=0.5)
    assert result.plan.slices and result.structural is not None
    for name in ("conv2.w", "conv3.w"):
        structural, final = get_weight(result.structural, name), get_weight(result.model, name)
        assert structural.shape == final.shape and structural.shape[1] < get_weight(original, name).shape[1]
        zeroed = final == 0
        assert zeroed.sum() == round(0.5 * structural.size)
        assert np.array_equal(final[~zeroed], structural[~zeroed])
    report = validate(original, result.model, result.plan, structural=result.structural)
    assert report, str(report)
    without = validate(original, result.model, result.plan)  # the original carries the same zeros
    assert without and "zeroed in the original" in without.parity.subject, str(without)


def test_sparsity_after_compensation_merges_the_updates() -> None:
    original = mlp()
    x = np.random.default_rng(2).normal(size=(64, 16)).astype(np.float32)
    result = onnxprune.prune(
        original, ratio=0.25, round_to=1, nm="2:4", calibration={"x": x}, compensate="lsq"
    )
    by = {u.tensor: u.by for u in result.plan.updates}
    assert any(v.startswith("compensate-") and v.endswith("+sparsity-2:4") for v in by.values()), by
    for name in by:
        if "sparsity" in by[name]:
            target = sparsity_targets(result.model)[name]
            assert nm_violations(get_weight(result.model, name), target.axis, 2, 4) == 0
    report = validate(original, result.model, result.plan, structural=result.structural)
    assert report, str(report)
    assert Plan.from_json(result.plan.to_json()) == result.plan


def test_merge_updates_joins_passes_in_order() -> None:
    merged = merge_updates(
        (TensorUpdate("a", (2,), "compensate-bias"),),
        [TensorUpdate("a", (2,), "sparsity"), TensorUpdate("b", (3,), "sparsity")],
    )
    assert [(u.tensor, u.by) for u in merged] == [("a", "compensate-bias+sparsity"), ("b", "sparsity")]


# ------------------------------------------------------------------------------ sparse initializers


def test_sparse_format_loads_and_computes_the_same() -> None:
    original = cnn()
    dense = onnxprune.prune(original, sparsity=0.9, exclude=ALL)
    stored = onnxprune.prune(original, sparsity=0.9, exclude=ALL, sparse_format=True)
    names = {s.values.name for s in stored.model.graph.sparse_initializer}
    assert names == {"conv1.w", "conv2.w", "conv3.w", "fc.w"}
    assert not names & {t.name for t in stored.model.graph.initializer}
    x = np.random.default_rng(3).normal(size=(2, 8, 6, 6)).astype(np.float32)
    want = ort_session(dense.model).run(None, {"x": x})[0]
    got = ort_session(stored.model).run(None, {"x": x})[0]
    assert np.array_equal(want, got)
    sizes = stored.report.sparsity["file_size"]
    assert sizes["sparse_format"]["raw"] < sizes["output"]["raw"]
    assert stored.report.sparsity["sparse_format"]["tensors"] == 4
    report = validate(original, stored.model, stored.plan, structural=stored.structural)
    assert report, str(report)
    assert np.array_equal(get_weight(densified(stored.model), "conv2.w"), get_weight(dense.model, "conv2.w"))


def test_sparse_format_keeps_dense_where_it_would_be_larger() -> None:
    result = onnxprune.prune(cnn(), sparsity=0.5, exclude=ALL, sparse_format=True)
    assert not result.model.graph.sparse_initializer
    assert "above 2/3 zeros" in result.report.sparsity["sparse_format"]["kept_dense"]


# ------------------------------------------------------------------------------ figures


def test_report_has_file_sizes_and_the_dense_runtime_note() -> None:
    figures = onnxprune.prune(cnn(), ratio=0.5, round_to=1, sparsity=0.5).report.sparsity
    assert set(figures["file_size"]) == {"input", "structural", "output"}
    assert figures["file_size"]["output"]["gzip"] < figures["file_size"]["structural"]["gzip"]
    assert figures["file_size"]["output"]["raw"] == figures["file_size"]["structural"]["raw"]
    assert "run sparse weights dense" in figures["note"]
    assert 0 < figures["all_sparsity"] < figures["sparsity"]


# ------------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sparsity": 1.0},
        {"sparsity": -0.1},
        {"nm": "4:2"},
        {"nm": "2"},
        {"nm": "2:4", "sparsity": 0.5},
        {"sparsity": 0.5, "sparsity_scope": "model"},
        {"ratio": 0.2, "sparse_format": True},
        {"sparsity": 0.5, "exclude": "("},
    ],
)
def test_bad_sparsity_arguments_are_usage_errors(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        onnxprune.prune(cnn(), **kwargs)


def test_parse_nm() -> None:
    assert parse_nm("2:4") == (2, 4)
    with pytest.raises(UsageError, match="N:M"):
        parse_nm("a:b")


def test_sparsify_in_place_on_a_model() -> None:
    model = mlp()
    report, updates = sparsify(model, SparsityOptions(ratio=0.25))
    assert [layer.tensor for layer in report.layers] == ["w2"]  # first and last stay dense
    assert updates == [TensorUpdate("w2", (32, 16), "sparsity")]
    assert int(np.count_nonzero(get_weight(model, "w2") == 0)) == 128


def test_wanda_maps_grouped_conv_entries_to_their_input_channels() -> None:
    from onnxprune.sparsity.layout import SparseTarget
    from onnxprune.sparsity.masks import wanda

    target = SparseTarget("conv", "Conv", "w", 1, "x", 1, groups=2)
    scores = wanda(np.ones((4, 2, 1, 1)), target, np.array([1.0, 2.0, 3.0, 4.0]))
    # outputs 0-1 read channels 0-1, outputs 2-3 read channels 2-3
    assert scores[:, :, 0, 0].tolist() == [[1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="channels"):
        wanda(np.ones((4, 2, 1, 1)), target, np.ones(3))


def test_wanda_with_calibration_on_an_exported_cnn() -> None:
    rng = np.random.default_rng(4)
    data = {"x": rng.normal(size=(16, 3, 32, 32)).astype(np.float32)}
    path = ROOT / "models" / "mobilenetv2_dynamo.onnx"
    result = onnxprune.prune(path, sparsity=0.5, calibration=data, compensate="none")
    criteria = {layer["criterion"] for layer in result.report.sparsity["layers"]}
    assert criteria == {"wanda"}  # depthwise (grouped) convs included
    assert any(layer["op_type"] == "Conv" for layer in result.report.sparsity["layers"])
    report = validate(path, result.model, result.plan, structural=result.structural)
    assert report, str(report)


def test_ties_at_the_threshold_go_in_order_of_position() -> None:
    scores = np.array([2.0, 1.0, 1.0, 1.0, 3.0, 1.0])
    assert layer_mask(scores, 0.5).tolist() == [True, False, False, False, True, True]
    assert layer_mask(scores, 0.0).all() and not layer_mask(scores, 0.99).any()
    rng = np.random.default_rng(5)
    values = rng.integers(0, 20, size=500).astype(np.float64)  # many ties
    for ratio in (0.1, 0.37, 0.5, 0.9):
        count = round(ratio * values.size)
        expected = np.ones(values.size, dtype=bool)
        expected[np.argsort(values, kind="stable")[:count]] = False
        assert np.array_equal(layer_mask(values, ratio), expected)
