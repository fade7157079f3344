"""Mask-equivalence parity, slice checks and validation on a hand-pruned conv -> relu -> conv."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.errors import ModelError, PlanError, UsageError
from onnxprune.plan import Plan, TensorSlice
from onnxprune.validate import (
    FEED_INT_HIGH,
    HALF_PRECISION_TOLERANCE,
    OutputDiff,
    ParityReport,
    ValidationReport,
    check_parity,
    check_slices,
    make_feeds,
    masked_model,
    ort_session,
    validate,
)
from onnxprune.weights import get_weight, set_weight, weight_tensors

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'

# conv1 makes C middle channels, conv2 reads them; `idx` is an exact (int64) output.
CONV_PAIR = """g (float[N, 3, 6, 6] x) => (float[N, 2, 6, 6] y, int64[N, 1, 6, 6] idx) {
    h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r = Relu(h)
    y = Conv <pads = [1, 1, 1, 1]> (r, w2, b2)
    idx = ArgMax <axis = 1> (y) }"""

KEEP = (0, 2, 3)  # the middle channel 1 of 4 is removed


def build(text: str, weights: dict[str, np.ndarray], *, check: bool = True) -> onnx.ModelProto:
    model = onnx.parser.parse_model(HEADER + text)
    model.graph.initializer.extend([numpy_helper.from_array(a, n) for n, a in weights.items()])
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def original_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b1": rng.standard_normal(4).astype(np.float32),
        "w2": rng.standard_normal((2, 4, 3, 3)).astype(np.float32),
        "b2": rng.standard_normal(2).astype(np.float32),
    }


def pruned_weights(keep: tuple[int, ...]) -> dict[str, np.ndarray]:
    w = original_weights()
    k = list(keep)
    return {"w1": w["w1"][k], "b1": w["b1"][k], "w2": w["w2"][:, k], "b2": w["b2"]}


def conv_plan(keep: tuple[int, ...] = KEEP, w2_role: str = "in") -> Plan:
    return Plan(
        slices=(
            TensorSlice("w1", axis=0, size=4, keep=keep, role="out"),
            TensorSlice("b1", axis=0, size=4, keep=keep, role="out"),
            TensorSlice("w2", axis=1, size=4, keep=keep, role=w2_role),  # type: ignore[arg-type]
        )
    )


def unpadded_pruned() -> onnx.ModelProto:
    """Correctly sliced weights, but conv2 lost its padding: outputs [N, 2, 4, 4]."""
    text = CONV_PAIR.replace("pads = [1, 1, 1, 1]> (r", "pads = [0, 0, 0, 0]> (r")
    text = text.replace("float[N, 2, 6, 6] y", "float[N, 2, 4, 4] y").replace("[N, 1, 6, 6]", "[N, 1, 4, 4]")
    return build(text, pruned_weights(KEEP))


@pytest.fixture
def original() -> onnx.ModelProto:
    return build(CONV_PAIR, original_weights())


@pytest.fixture
def pruned() -> onnx.ModelProto:
    return build(CONV_PAIR, pruned_weights(KEEP))


# --- weights ---------------------------------------------------------------------------------


def test_weight_tensors_include_constant_nodes_and_set_weight_replaces_them() -> None:
    model = build(
        """g (float[2] x) => (float[2] y) {
            c = Constant <value = float[2] {1.0, 2.0}> ()
            h = Add(x, c)
            y = Mul(h, s) }""",
        {"s": np.array([3.0, 4.0], np.float32)},
    )
    assert set(weight_tensors(model)) == {"s", "c"}
    set_weight(model, "c", np.array([5.0, 6.0], np.float32))
    set_weight(model, "s", np.array([7.0, 8.0], np.float32))
    assert get_weight(model, "c").tolist() == [5.0, 6.0]
    assert get_weight(model, "s").tolist() == [7.0, 8.0]
    assert model.graph.initializer[0].name == "s"
    out = ort_session(model).run(None, {"x": np.zeros(2, np.float32)})[0]
    np.testing.assert_array_equal(out, [35.0, 48.0])
    with pytest.raises(KeyError):
        set_weight(model, "h", np.zeros(2, np.float32))
    with pytest.raises(KeyError):
        get_weight(model, "x")


def test_set_weight_reshapes_an_initializer_listed_as_graph_input(original: onnx.ModelProto) -> None:
    original.graph.input.extend([onnx.helper.make_tensor_value_info("b1", onnx.TensorProto.FLOAT, [4])])
    set_weight(original, "b1", np.zeros(3, np.float32))
    assert [d.dim_value for d in original.graph.input[-1].type.tensor_type.shape.dim] == [3]


# --- feeds -----------------------------------------------------------------------------------


def test_make_feeds_types_shapes_and_reproducibility() -> None:
    model = onnx.parser.parse_model(
        HEADER
        + """g (float[N, 3, H, W] x, float16[N, 4] h, int64[N, S] ids, bool[N, S] m, double[2] d)
            => (float[N, 3, H, W] y) { y = Relu(x) }"""
    )
    shapes = {"x": [1, 3, 8, 10], "ids": [1, 5], "m": [1, 5]}
    feeds = make_feeds(model, seed=3, input_shapes=shapes, batch=2)
    assert {k: (v.shape, v.dtype) for k, v in feeds.items()} == {
        "x": ((2, 3, 8, 10), np.float32),
        "h": ((2, 4), np.float16),
        "ids": ((2, 5), np.int64),
        "m": ((2, 5), np.bool_),
        "d": ((2,), np.float64),
    }
    assert feeds["m"].all()
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < FEED_INT_HIGH
    assert feeds["x"].std() > 0.5
    again = make_feeds(model, seed=3, input_shapes=shapes, batch=2)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    other = make_feeds(model, seed=4, input_shapes=shapes, batch=2)
    assert not np.array_equal(feeds["x"], other["x"])


def test_make_feeds_refuses_to_guess_dynamic_dims() -> None:
    model = onnx.parser.parse_model(
        HEADER + "g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }"
    )
    assert make_feeds(model, seed=0, input_shapes={"x": [1, 3, 4, 5]})["x"].shape == (1, 3, 4, 5)
    with pytest.raises(ValueError, match=r"input 'x' dim 2"):
        make_feeds(model, seed=0)
    with pytest.raises(UsageError, match="'y'"):
        make_feeds(model, seed=0, input_shapes={"y": [1, 3, 4, 5]})


def test_make_feeds_rejects_inputs_it_cannot_fill() -> None:
    model = onnx.parser.parse_model(HEADER + "g (string[2] s) => (string[2] y) { y = Identity(s) }")
    with pytest.raises(ModelError, match="'s'"):
        make_feeds(model, seed=0)


# --- masking and slices ----------------------------------------------------------------------


def test_masked_model_zeroes_exactly_the_removed_in_indices(original: onnx.ModelProto) -> None:
    before = original.SerializeToString()
    masked = masked_model(original, conv_plan())
    assert original.SerializeToString() == before  # the original is untouched
    w = original_weights()
    w2 = get_weight(masked, "w2")
    assert not w2[:, 1].any()
    np.testing.assert_array_equal(w2[:, KEEP], w["w2"][:, KEEP])
    # "out" slices are not masked
    np.testing.assert_array_equal(get_weight(masked, "w1"), w["w1"])
    np.testing.assert_array_equal(get_weight(masked, "b1"), w["b1"])


def test_masked_model_composes_in_slices_on_two_axes(original: onnx.ModelProto) -> None:
    plan = Plan(
        slices=(
            TensorSlice("w2", axis=0, size=2, keep=(1,), role="in"),
            TensorSlice("w2", axis=1, size=4, keep=(0, 3), role="in"),
        )
    )
    w2 = get_weight(masked_model(original, plan), "w2")
    expected = original_weights()["w2"].copy()
    expected[0] = 0
    expected[:, [1, 2]] = 0
    np.testing.assert_array_equal(w2, expected)


def test_masked_model_rejects_plans_that_do_not_fit(original: onnx.ModelProto) -> None:
    with pytest.raises(PlanError, match="nope"):
        masked_model(original, Plan(slices=(TensorSlice("nope", 0, 4, (0,), "in"),)))
    with pytest.raises(PlanError, match="size 5"):
        masked_model(original, Plan(slices=(TensorSlice("w2", 1, 5, (0,), "in"),)))
    with pytest.raises(PlanError, match="out of range"):
        masked_model(original, Plan(slices=(TensorSlice("b1", 1, 4, (0,), "out"),)))


def test_check_slices_accepts_the_correct_pair(original: onnx.ModelProto, pruned: onnx.ModelProto) -> None:
    assert check_slices(original, pruned, conv_plan()) == []


def test_check_slices_finds_wrong_values_missing_slices_and_unplanned_shape_changes(
    original: onnx.ModelProto,
) -> None:
    wrong = build(CONV_PAIR, pruned_weights((0, 1, 3)))
    problems = check_slices(original, wrong, conv_plan())
    assert {p.split(":")[0] for p in problems} == {"w1", "b1", "w2"}
    assert all("not the original taken" in p for p in problems)

    pruned = build(CONV_PAIR, pruned_weights(KEEP))
    incomplete = Plan(slices=conv_plan().slices[:2])  # forgets w2
    (problem,) = check_slices(original, pruned, incomplete)
    assert problem.startswith("w2: shape changed from [2, 4, 3, 3] to [2, 3, 3, 3] without a plan slice")


def test_check_slices_composes_slices_on_two_axes(original: onnx.ModelProto) -> None:
    plan = Plan(
        slices=(
            TensorSlice("w2", axis=0, size=2, keep=(1,), role="out"),
            TensorSlice("w2", axis=1, size=4, keep=(0, 3), role="in"),
        )
    )
    both = onnx.ModelProto()
    both.CopyFrom(original)
    set_weight(both, "w2", original_weights()["w2"][[1]][:, [0, 3]])
    assert check_slices(original, both, plan) == []
    set_weight(both, "w2", original_weights()["w2"][:, [0, 3]])  # only one axis applied
    (problem,) = check_slices(original, both, plan)
    assert "give [1, 2, 3, 3]" in problem


# --- parity ----------------------------------------------------------------------------------


def test_check_parity_passes_for_a_correct_hand_pruned_pair(
    original: onnx.ModelProto, pruned: onnx.ModelProto
) -> None:
    report = check_parity(original, pruned, conv_plan())
    assert report, str(report)
    assert report.error is None
    assert report.feeds_tried == 6  # 3 seeds x batches (1, 2): dim 0 is dynamic
    assert [d.name for d in report.outputs] == ["y", "idx"]
    y, idx = report.outputs
    assert y.ok and y.rel_err <= 1e-4 and y.tolerance == 1e-4
    assert idx.ok and idx.max_abs == 0.0 and idx.tolerance is None


def test_parity_without_masking_is_not_equivalence(
    original: onnx.ModelProto, pruned: onnx.ModelProto
) -> None:
    # the same pruned model, but the plan does not mark w2's slice as "in": nothing is masked
    report = check_parity(original, pruned, conv_plan(w2_role="out"))
    assert not report
    assert report.outputs[0].rel_err > 1e-2


def test_check_parity_fails_when_the_wrong_channel_was_removed(original: onnx.ModelProto) -> None:
    wrong = build(CONV_PAIR, pruned_weights((0, 1, 3)))
    report = check_parity(original, wrong, conv_plan())
    assert not report
    assert report.error is None
    y = report.outputs[0]
    assert not y.ok and y.rel_err > 1e-2
    text = str(report)
    assert "FAILED" in text
    assert "FAIL output 'y'" in text
    assert f"passes at >= {y.rel_err:.3g}" in text


def test_check_parity_reports_a_shape_mismatch(original: onnx.ModelProto) -> None:
    report = check_parity(original, unpadded_pruned(), conv_plan())
    assert not report
    assert "expected (1, 2, 6, 6)" in str(report)


def test_check_parity_reports_a_plan_that_does_not_fit(
    original: onnx.ModelProto, pruned: onnx.ModelProto
) -> None:
    report = check_parity(original, pruned, Plan(slices=(TensorSlice("w9", 0, 4, (0,), "in"),)))
    assert not report and "w9" in (report.error or "")


def test_check_parity_single_batch_when_dim0_is_static() -> None:
    text = "g (float[1, 4] x) => (float[1, 2] y) { y = MatMul(x, w) }"
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    original = build(text, {"w": w})
    pruned = build(text.replace("[1, 4] x", "[1, 4] x"), {"w": w})
    report = check_parity(original, pruned, Plan(), seeds=(0, 1))
    assert report and report.feeds_tried == 2


def test_parity_report_str_lists_each_output() -> None:
    report = ParityReport(
        ok=False,
        tolerance=1e-4,
        outputs=[
            OutputDiff("logits", (1, 10), 3e-3, 2e-3, ok=False, tolerance=1e-4),
            OutputDiff("aux", (1, 10), 1e-8, 1e-8, ok=True, tolerance=1e-4),
        ],
        feeds_tried=3,
    )
    lines = str(report).splitlines()
    assert len(lines) == 3
    assert lines[1].strip().startswith("FAIL output 'logits'")
    assert "max abs 0.003" in lines[1] and "rel err 0.002" in lines[1] and ">= 0.002" in lines[1]
    assert lines[2].strip().startswith("ok   output 'aux'")
    assert not report


# --- validate --------------------------------------------------------------------------------


def test_validate_passes_for_the_correct_pair_from_paths(
    tmp_path, original: onnx.ModelProto, pruned: onnx.ModelProto
) -> None:
    onnx.save(original, tmp_path / "orig.onnx")
    onnx.save(pruned, tmp_path / "pruned.onnx")
    conv_plan().save(tmp_path / "plan.json")
    report = validate(tmp_path / "orig.onnx", tmp_path / "pruned.onnx", tmp_path / "plan.json")
    assert isinstance(report, ValidationReport)
    assert report, str(report)
    assert report.checker_ok and report.runtime_ok and report.shapes_ok and not report.slice_problems
    assert report.parity is not None and report.parity.feeds_tried == 6
    assert str(report).startswith("validation passed")
    data = json.loads(json.dumps(report.to_json()))
    assert data["parity"]["outputs"][0]["name"] == "y"


def test_validate_catches_a_checker_failure(original: onnx.ModelProto, pruned: onnx.ModelProto) -> None:
    # a stale value_info: the middle tensor still claims 4 channels after pruning to 3
    pruned.graph.value_info.extend(
        [onnx.helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, ["N", 4, 6, 6])]
    )
    report = validate(original, pruned, conv_plan())
    assert not report
    assert not report.checker_ok
    assert report.checker_error and "(3) vs (4)" in report.checker_error
    assert "onnx.checker (full check): FAILED" in str(report)


def test_validate_reports_wrong_pruning(original: onnx.ModelProto) -> None:
    wrong = build(CONV_PAIR, pruned_weights((0, 1, 3)))
    report = validate(original, wrong, conv_plan())
    assert not report
    assert report.checker_ok and report.runtime_ok and report.shapes_ok
    assert len(report.slice_problems) == 3
    assert report.parity is not None and not report.parity
    assert "FAIL output 'y'" in str(report)


def test_validate_reports_changed_graph_output_shapes_and_runtime_failure(original: onnx.ModelProto) -> None:
    broken = build(
        CONV_PAIR.replace("float[N, 2, 6, 6] y", "float[N, 3, 6, 6] y"), pruned_weights(KEEP), check=False
    )
    broken.graph.node[0].input[1] = "missing"  # ONNX Runtime cannot load this
    report = validate(original, broken, conv_plan())
    assert not report
    assert not report.shapes_ok and "graph output 'y'" in report.shape_problems[0]
    assert not report.runtime_ok and report.runtime_error
    assert report.parity is None
    assert "parity: not run" in str(report)


def test_float16_outputs_are_compared_at_half_precision_tolerance() -> None:
    text = "g (float16[N, 4] x) => (float16[N, 2] y) { y = MatMul(x, w) }"
    w = np.arange(8, dtype=np.float16).reshape(4, 2)
    model = build(text, {"w": w})
    report = check_parity(model, model, Plan())
    assert report
    assert report.outputs[0].tolerance == HALF_PRECISION_TOLERANCE


def test_report_json_is_strict(original: onnx.ModelProto) -> None:
    report = check_parity(original, unpadded_pruned(), conv_plan())
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["outputs"][0]["max_abs"] is None and data["outputs"][0]["ok"] is False


def test_validate_needs_the_dynamic_dims_it_cannot_guess() -> None:
    text = "g (float[N, 4, L] x) => (float[N, 4, L] y) { y = Mul(x, s) }"
    model = build(text, {"s": np.ones((4, 1), np.float32)})
    with pytest.raises(UsageError, match=r"input 'x' dim 2"):
        validate(model, model, Plan())
    report = validate(model, model, Plan(), input_shapes={"x": [1, 4, 7]})
    assert report, str(report)
