"""Validation of weight sparsity: sparsified tensors must be the structural ones with entries
zeroed and nothing else changed, N:M patterns must hold; parity with and without the structural
model; the CLI; real exporter outputs (torch dynamo and TorchScript, tf2onnx, transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.cli import main
from onnxprune.plan import Plan, TensorUpdate
from onnxprune.slice_check import check_slices
from onnxprune.sparsity import nm_violations, sparsity_targets
from onnxprune.validate import validate
from onnxprune.weights import get_weight, set_weight
from tests.sparsity_graphs import cnn

ROOT = Path(__file__).resolve().parent.parent
ALL = "no node is called this"


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def test_a_kept_entry_changed_is_reported() -> None:
    original = cnn()
    result = onnxprune.prune(original, sparsity=0.5, exclude=ALL)
    tampered = _copy(result.model)
    w = np.array(get_weight(tampered, "conv2.w"))
    kept = np.flatnonzero(w)[0]
    w.reshape(-1)[kept] *= 1.5
    set_weight(tampered, "conv2.w", w)
    problems = check_slices(original, tampered, result.plan)
    assert problems == ["conv2.w: 1 entries changed to values other than zero (sparsity only zeroes entries)"]
    assert not validate(original, tampered, result.plan, structural=result.structural)


def test_a_broken_nm_group_is_reported() -> None:
    original = cnn()
    result = onnxprune.prune(original, nm="2:4", exclude=ALL)
    tampered = _copy(result.model)
    w = np.array(get_weight(tampered, "fc.w"))
    first_zero = np.flatnonzero(w.reshape(-1) == 0)[0]  # put one original value back: 3 of 4 kept
    w.reshape(-1)[first_zero] = get_weight(original, "fc.w").reshape(-1)[first_zero]
    set_weight(tampered, "fc.w", w)
    problems = check_slices(original, tampered, result.plan)
    assert problems == ["fc.w: 1 of 8 groups of 4 along axis 1 hold more than 2 non-zeros (sparsity-2:4)"]
    assert nm_violations(w, 1, 2, 4) == 1


def test_an_nm_update_of_a_weight_no_matmul_reads_is_reported() -> None:
    original = cnn()
    plan = Plan(updates=(TensorUpdate("conv1.b", (16,), "sparsity-2:4"),))
    problems = check_slices(original, original, plan)
    assert problems == ["conv1.b: sparsity-2:4, but no Conv, Gemm or MatMul reads it as a weight"]


def test_a_zeroed_entry_without_an_update_is_still_an_unplanned_change() -> None:
    original = cnn()
    result = onnxprune.prune(original, sparsity=0.5, exclude=ALL)
    stripped = Plan(slices=result.plan.slices)  # the updates left out
    problems = check_slices(original, result.model, stripped)
    assert "conv2.w: values changed, but the plan neither slices it nor lists it in updates" in problems


def test_parity_without_structural_carries_the_zeros_into_the_original() -> None:
    original = cnn()
    result = onnxprune.prune(original, ratio=0.5, round_to=1, nm="2:4")
    report = validate(original, result.model, result.plan)
    assert report and report.parity is not None and report.parity_skipped is None, str(report)
    assert max(o.rel_err for o in report.parity.outputs) < 1e-5


# ------------------------------------------------------------------------------ CLI


def test_cli_sparsity_alone_writes_validates_and_replays(tmp_path: Path, capsys) -> None:
    src, out, plan, rep = (tmp_path / n for n in ("m.onnx", "o.onnx", "p.json", "r.json"))
    onnx.save(cnn(), src)
    code = main([str(src), str(out), "--nm", "2:4", "--validate", "--bench-runs", "2", "--plan", str(plan),
                 "--report", str(rep)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "weight sparsity 2:4" in printed and "gzip" in printed and "run sparse weights dense" in printed
    assert "validation passed" in printed
    data = json.loads(rep.read_text())
    assert data["sparsity"]["pattern"] == "2:4" and data["validation"]["slice_problems"] == []
    assert {u["by"] for u in json.loads(plan.read_text())["updates"]} == {"sparsity-2:4"}
    assert main(["validate", str(src), str(out), "--plan", str(plan)]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nm", "4:2"], "N:M"),
        (["--ratio", "0.2", "--sparse-format"], "needs weight sparsity"),
        (["--sparsity", "0.5", "--nm", "2:4"], "not both"),
    ],
)
def test_cli_refuses_bad_sparsity_flags(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    src, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(cnn(), src)
    assert main([str(src), str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------ exporter outputs

BERT_SHAPES = {"input_ids": [1, 8], "attention_mask": [1, 8], "token_type_ids": [1, 8]}
MODELS = [
    ("models/resnet_dynamo.onnx", None),
    ("models/resnet_torchscript.onnx", None),
    ("models/mobilenetv2_dynamo.onnx", None),
    ("models/keras/functional_cnn.onnx", {"input": [1, 64, 64, 3]}),
    ("models/trained/rnet_torchscript.onnx", None),
    ("models/transformers/bert_dynamo.onnx", BERT_SHAPES),
    ("models/transformers/gpt2_torchscript.onnx", {"input_ids": [1, 8], "attention_mask": [1, 8]}),
]


@pytest.mark.parametrize(("path", "shapes"), MODELS, ids=[Path(p).stem for p, _ in MODELS])
@pytest.mark.parametrize("how", [{"ratio": 0.3, "nm": "2:4"}, {"sparsity": 0.5, "sparsity_scope": "global"}])
def test_exported_models_validate(path: str, shapes, how: dict) -> None:
    model = ROOT / path
    result = onnxprune.prune(model, **how)
    assert result.plan.updates, result.report.sparsity["dense"]
    report = validate(model, result.model, result.plan, structural=result.structural, input_shapes=shapes)
    assert report, str(report)
    if "nm" in how:
        targets = sparsity_targets(result.model)
        for u in result.plan.updates:
            assert nm_violations(get_weight(result.model, u.tensor), targets[u.tensor].axis, 2, 4) == 0
    else:
        assert result.report.sparsity["sparsity"] == pytest.approx(0.5, abs=1e-3)
