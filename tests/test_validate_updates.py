"""Validation of plans whose passes change weights after slicing (`updates`), dropped branches,
and the fidelity report, on the hand-pruned conv pair of test_validate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.cli import main
from onnxprune.fidelity import check_fidelity
from onnxprune.parity import check_parity, masked_model
from onnxprune.plan import DroppedBranch, Plan, TensorUpdate
from onnxprune.runtime import ort_session
from onnxprune.validate import validate
from onnxprune.weights import get_weight, set_weight
from tests.conftest import ORACLE
from tests.test_validate import CONV_PAIR, KEEP, build, conv_plan, original_weights, pruned_weights

UPDATE = TensorUpdate("b1", (3,), "compensate-bias")


@pytest.fixture
def original() -> onnx.ModelProto:
    return build(CONV_PAIR, original_weights())


@pytest.fixture
def structural() -> onnx.ModelProto:
    return build(CONV_PAIR, pruned_weights(KEEP))


def compensated(structural: onnx.ModelProto, name: str = "b1") -> onnx.ModelProto:
    """The structural prune with one kept bias changed, as a compensation pass would."""
    final = onnx.ModelProto()
    final.CopyFrom(structural)
    set_weight(final, name, get_weight(final, name) + np.float32(0.5))
    return final


def with_updates(*updates: TensorUpdate) -> Plan:
    return Plan(slices=conv_plan().slices, updates=updates)


def test_compensated_model_validates_in_two_steps(original, structural) -> None:
    report = validate(original, compensated(structural), with_updates(UPDATE), structural=structural)
    assert report, str(report)
    assert not report.slice_problems
    assert report.parity is not None and report.parity.subject == "structural prune"
    assert report.parity.feeds_tried == 6
    assert report.fidelity is not None and report.fidelity.feeds == 3
    y = report.fidelity.outputs[0]
    assert y.name == "y" and 0.5 < y.cosine < 0.9999 and y.rel_err > 1e-3
    text = str(report)
    assert "parity ok: structural prune vs masked original" in text
    assert "fidelity to the original on random feeds (3 feeds)" in text
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["fidelity"]["outputs"][0]["cosine"] == pytest.approx(y.cosine)


def test_without_the_structural_model_parity_is_reported_as_not_checked(original, structural) -> None:
    report = validate(original, compensated(structural), with_updates(UPDATE))
    assert not report
    assert report.parity is None and "1 updated tensors" in (report.parity_skipped or "")
    assert "parity: NOT CHECKED" in str(report)
    assert not report.slice_problems and report.fidelity is not None
    # what would have been reported as parity is a real difference: fidelity below 1
    assert report.fidelity.outputs[0].cosine < 0.9999


@pytest.mark.parametrize(
    ("changed", "plan", "pattern"),
    [
        ("b1", conv_plan(), r"b1: pruned values are not the original taken at the plan's indices"),
        ("b2", with_updates(UPDATE), "b2: values changed, but the plan neither slices it nor lists it"),
        ("b1", with_updates(TensorUpdate("b1", (4,), "x")), r"b1: shape \[3\] in the pruned model, updates"),
        ("b1", with_updates(UPDATE, TensorUpdate("b9", (1,), "x")), "b9: listed in updates"),
    ],
)
def test_unlisted_or_misdescribed_value_changes_fail(original, structural, changed, plan, pattern) -> None:
    report = validate(original, compensated(structural, changed), plan, structural=structural)
    assert not report
    assert any(re.search(pattern, p) for p in report.slice_problems), report.slice_problems


def test_listed_update_of_an_unsliced_tensor_passes(original, structural) -> None:
    plan = with_updates(TensorUpdate("b2", (2,), "compensate-bias"))
    report = validate(original, compensated(structural, "b2"), plan, structural=structural)
    assert report, str(report)


def test_structural_model_must_be_an_exact_slice(original, structural) -> None:
    report = validate(
        original, compensated(structural), with_updates(UPDATE), structural=compensated(structural)
    )
    assert not report
    assert report.slice_problems == [
        "structural model: b1: pruned values are not the original taken at the plan's indices (axis 0 keep "
        "[0, 2, 3])"
    ]
    assert report.parity is not None and not report.parity  # the changed bias breaks mask-equivalence


def test_fidelity_on_user_data_with_class_scores(tmp_path: Path) -> None:
    text = "g (float[N, 4] x) => (float[N, 3] y) { y = MatMul(x, w) }"
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    original = build(text, {"w": w})
    final = build(text, {"w": w * np.array([1.0, 1.0, -1.0], np.float32)})  # class 2 flips sign
    x = np.abs(np.random.default_rng(0).standard_normal((10, 4))).astype(np.float32)
    np.savez(tmp_path / "heldout.npz", x=x)
    report = check_fidelity(original, final, tmp_path / "heldout.npz")
    y = report.outputs[0]
    assert report.source.endswith("heldout.npz") and report.feeds == 10
    assert y.argmax_agreement == 0.0 and y.argmax_samples == 10  # class 2 always won, now it never does
    assert y.cosine < 0.5
    same = check_fidelity(original, original, tmp_path / "heldout.npz")
    assert same.outputs[0].argmax_agreement == 1.0 and same.outputs[0].rel_err == 0.0
    report = validate(original, original, Plan(), data=tmp_path / "heldout.npz")
    assert report and report.fidelity is not None and report.fidelity.feeds == 10


def test_fidelity_reports_non_float_outputs_without_figures(original) -> None:
    report = check_fidelity(original, original)
    idx = report.outputs[1]
    assert idx.name == "idx" and idx.cosine is None and "non-float" in (idx.detail or "")


RESIDUAL = """g (float[N, 4] x) => (float[N, 4] y) {
    m = MatMul(x, w)
    r = Relu(m)
    y = Add(x, r) }"""


def residual(text: str = RESIDUAL) -> onnx.ModelProto:
    model = build(text, {"w": np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32)})
    model.graph.node[2].name = "add0"
    return model


def test_dropped_branches_are_masked_by_zero_where_their_add_reads_them() -> None:
    model = residual()
    plan = Plan(dropped=(DroppedBranch("add0", "r"),))
    masked = masked_model(model, plan)
    onnx.checker.check_model(masked, full_check=True)
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(ort_session(masked).run(None, {"x": x})[0], x)
    assert len(model.graph.node) == 3  # the original is untouched
    shallow = build("g (float[N, 4] x) => (float[N, 4] y) { y = Identity(x) }", {})
    assert check_parity(model, shallow, plan)
    assert not check_parity(model, shallow, Plan())
    bad = check_parity(model, shallow, Plan(dropped=(DroppedBranch("add0", "m"),)))
    assert not bad and "no Add node 'add0' reads 'm'" in (bad.error or "")


@pytest.mark.skipif(
    not ORACLE.exists() and not os.environ.get("CI"),
    reason=f"the independent checker is not at {ORACLE}",
)
def test_the_oracle_accepts_a_plan_with_updates_and_refuses_unlisted_changes(
    tmp_path: Path, original, structural
) -> None:
    assert ORACLE.exists(), f"CI needs the independent checker at {ORACLE}"
    onnx.save(original, tmp_path / "orig.onnx")
    onnx.save(compensated(structural), tmp_path / "final.onnx")
    with_updates(UPDATE).save(tmp_path / "plan.json")
    conv_plan().save(tmp_path / "unlisted.json")

    def oracle(plan: str) -> tuple[int, dict]:
        args = [str(tmp_path / "orig.onnx"), str(tmp_path / "final.onnx"), str(tmp_path / plan)]
        done = subprocess.run(
            [sys.executable, str(ORACLE), *args, "--runs", "2"], capture_output=True, text=True, check=False
        )
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    code, figures = oracle("plan.json")
    assert code == 0, figures["fails"]
    assert (
        figures["updates"] == 1 and figures["parity_rel_err"] is None and figures["fidelity_rel_err"] > 1e-3
    )
    code, figures = oracle("unlisted.json")
    assert code == 1 and any("b1" in fail for fail in figures["fails"])


@pytest.mark.skipif(
    not ORACLE.exists() and not os.environ.get("CI"),
    reason=f"the independent checker is not at {ORACLE}",
)
def test_the_oracle_reads_dropped_branches_as_written(tmp_path: Path) -> None:
    assert ORACLE.exists(), f"CI needs the independent checker at {ORACLE}"
    onnx.save(residual(), tmp_path / "orig.onnx")
    onnx.save(
        build("g (float[N, 4] x) => (float[N, 4] y) { y = Identity(x) }", {}), tmp_path / "shallow.onnx"
    )
    Plan(dropped=(DroppedBranch("add0", "r"),)).save(tmp_path / "plan.json")
    args = [str(tmp_path / name) for name in ("orig.onnx", "shallow.onnx", "plan.json")]
    done = subprocess.run(
        [sys.executable, str(ORACLE), *args, "--runs", "2"], capture_output=True, text=True, check=False
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and figures["parity_rel_err"] == 0.0, figures


def test_cli_validate_checks_parity_on_the_structural_model_and_reports_fidelity(
    original, structural, tmp_path, capsys
):
    paths = {}
    for name, model in (("orig", original), ("sliced", structural), ("final", compensated(structural))):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, paths[name])
    plan = tmp_path / "plan.json"
    with_updates(UPDATE).save(plan)
    data = tmp_path / "data.npz"
    x = np.random.default_rng(0).standard_normal((5, *_input_shape(original))).astype(np.float32)
    np.savez(data, **{original.graph.input[0].name: x})
    common = [str(paths["orig"]), str(paths["final"]), "--plan", str(plan)]
    assert main(["validate", *common, "--structural", str(paths["sliced"]), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "parity ok: structural prune" in out
    assert "fidelity to the original on" in out and "(5 feeds)" in out
    assert main(["validate", *common]) == 1  # with updates and no structural model: parity unchecked


def _input_shape(model: onnx.ModelProto) -> list[int]:
    return [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
