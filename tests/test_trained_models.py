"""The trained reference models (models/trained/) and the task metrics of benchmarks/trained_fidelity.py.

No torch: only the checked-in ONNX files and data, numpy, ONNX Runtime and onnxprune.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxprune

ROOT = Path(__file__).resolve().parent.parent
TRAINED = ROOT / "models" / "trained"
PROVENANCE = json.loads((TRAINED / "PROVENANCE.json").read_text())
MODELS = sorted(PROVENANCE["models"])


def _load_harness() -> ModuleType:
    path = ROOT / "benchmarks" / "trained_fidelity.py"
    spec = importlib.util.spec_from_file_location("trained_fidelity", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


tf = _load_harness()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ the files


def test_every_model_kind_and_both_exporters_are_there() -> None:
    kinds = {PROVENANCE["models"][name]["kind"] for name in MODELS}
    assert kinds == {"crepe", "mtcnn_rnet"}
    for kind in kinds:
        exporters = {e["exporter"] for e in PROVENANCE["models"].values() if e["kind"] == kind}
        assert exporters == {"torchscript", "dynamo"}


def test_checked_in_files_stay_small() -> None:
    total = sum(p.stat().st_size for p in TRAINED.rglob("*") if p.is_file())
    assert total < 6.5e6


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_provenance_and_loads(name: str) -> None:
    entry = PROVENANCE["models"][name]
    path = TRAINED / name
    assert _sha256(path) == entry["sha256"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == entry["ir_version"]
    assert {o.domain or "": o.version for o in model.opset_import}[""] == entry["opset"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [entry["input_name"]]
    assert [o.name for o in session.get_outputs()] == entry["output_names"]
    assert entry["max_abs_diff_vs_torch"] < 1e-4


@pytest.mark.parametrize("name", sorted(PROVENANCE["data"]))
def test_data_matches_provenance(name: str) -> None:
    entry = PROVENANCE["data"][name]
    path = TRAINED / name
    assert _sha256(path) == entry["sha256"]
    data = tf.load_npz(path)
    assert sorted(data) == entry["keys"]
    assert all(len(v) == entry["samples"] for v in data.values())


@pytest.mark.parametrize("kind", sorted(tf.KINDS))
def test_data_is_keyed_by_graph_input_and_split(kind: str) -> None:
    spec = tf.KINDS[kind]
    calib, held = tf.load_npz(spec.calib_data), tf.load_npz(spec.eval_data)
    name, shape = spec.signature
    for data in (calib, held):
        assert list(data) == [name]
        assert data[name].dtype == np.float32 and data[name].shape[1:] == shape
    assert len(calib[name]) >= 200 and len(held[name]) >= 200
    # no evaluation sample is also a calibration sample
    seen = {row.tobytes() for row in calib[name]}
    assert not any(row.tobytes() in seen for row in held[name])
    labels = tf.load_npz(spec.eval_labels)
    assert name not in labels and all(len(v) == len(held[name]) for v in labels.values())


def test_crepe_frames_are_normalised_and_tones_in_range() -> None:
    frames = tf.load_npz(tf.KINDS["crepe"].eval_data)["frames"]
    np.testing.assert_allclose(frames.mean(axis=1), 0, atol=1e-3)
    np.testing.assert_allclose(frames.std(axis=1, ddof=1), 1, atol=1e-3)
    for split in ("calib", "eval"):
        f0 = tf.load_npz(TRAINED / "data" / f"crepe_{split}_labels.npz")["f0_hz"]
        assert f0.min() >= 60 and f0.max() <= 1000


# ------------------------------------------------------------------- models do their task


@pytest.mark.parametrize("name", MODELS)
def test_original_model_does_its_task(name: str) -> None:
    kind = tf.KINDS[PROVENANCE["models"][name]["kind"]]
    outputs = tf.run_model(TRAINED / name, tf.load_npz(kind.eval_data))
    metric = kind.metric(outputs, tf.load_npz(kind.eval_labels))
    recorded = PROVENANCE["models"][name]["task_metric"]
    assert recorded["name"] == kind.metric_name
    assert metric >= 0.95, f"{name}: {kind.metric_name} {metric}"
    assert abs(metric - recorded["value"]) <= 0.01  # two frames / crops either way across CPUs


@pytest.mark.parametrize("name", MODELS)
def test_prunes_at_0_3_with_parity(name: str) -> None:
    path = TRAINED / name
    result = onnxprune.prune(str(path), ratio=0.3)
    assert result.report.params_after < result.report.params_before
    report = onnxprune.validate(str(path), result.model, result.plan)
    assert report, str(report)


# ------------------------------------------------------------------------ CREPE metric


@pytest.mark.parametrize("bin_", [0, 1, 100, 358, 359])
def test_one_hot_activation_decodes_to_its_bin(bin_: int) -> None:
    act = np.zeros((1, 360))
    act[0, bin_] = 1.0
    hz = tf.crepe_decode(act)
    expected = 10 * 2 ** ((20 * bin_ + 1997.3794084376191) / 1200)
    np.testing.assert_allclose(hz, [expected], rtol=1e-12)


def test_bin_zero_is_31_7_hz_and_bins_are_20_cents_apart() -> None:
    cents = tf.crepe_bin_cents()
    assert cents.shape == (360,)
    np.testing.assert_allclose(np.diff(cents), 20.0)
    np.testing.assert_allclose(tf.cents_to_hz(cents[0]), 31.70, atol=0.01)
    np.testing.assert_allclose(tf.cents_to_hz(cents[-1]), 2005.5, atol=0.1)
    np.testing.assert_allclose(tf.hz_to_cents(tf.cents_to_hz(cents)), cents)


def test_decode_is_the_weighted_average_around_the_argmax() -> None:
    act = np.zeros((2, 360))
    act[0, 100], act[0, 101] = 1.0, 1.0  # halfway between bins 100 and 101
    act[1, 200], act[1, 201], act[1, 250] = 0.9, 0.3, 0.8  # bin 250 is outside the window
    cents = tf.hz_to_cents(tf.crepe_decode(act))
    base = 1997.3794084376191
    np.testing.assert_allclose(cents[0], base + 20 * 100.5)
    np.testing.assert_allclose(cents[1], base + 20 * (200 * 0.9 + 201 * 0.3) / 1.2)


def test_torchcrepe_weighting_applies_a_second_sigmoid() -> None:
    act = np.zeros((1, 360))
    act[0, 100], act[0, 101] = 1.0, 0.5
    cents = tf.hz_to_cents(tf.crepe_decode(act, weighting="torchcrepe"))
    weights = 1 / (1 + np.exp(-act[0, 96:105]))
    expected = (weights * tf.crepe_bin_cents(np.arange(96, 105))).sum() / weights.sum()
    np.testing.assert_allclose(cents[0], expected)
    with pytest.raises(ValueError, match="weighting"):
        tf.crepe_decode(act, weighting="mean")
    with pytest.raises(ValueError, match="360"):
        tf.crepe_decode(np.zeros((1, 10)))


def test_pitch_threshold_is_50_cents_inclusive() -> None:
    true = np.full(4, 440.0)
    pred = 440.0 * 2 ** (np.array([50.0, -50.0, 50.01, -50.01]) / 1200)
    np.testing.assert_array_equal(tf.pitch_within(pred, true), [True, True, False, False])


def test_raw_pitch_accuracy_counts_frames() -> None:
    act = np.zeros((4, 360))
    bins = np.array([10, 100, 200, 300])
    act[np.arange(4), bins] = 1.0
    truth = tf.cents_to_hz(tf.crepe_bin_cents(bins))
    truth[1] *= 2 ** (60 / 1200)  # 60 cents off: wrong
    truth[2] *= 2 ** (-40 / 1200)  # 40 cents off: right
    assert tf.raw_pitch_accuracy(act, truth) == 0.75
    assert tf.raw_pitch_accuracy(act, truth, tolerance=70) == 1.0


# ------------------------------------------------------------------ RNet metric, fidelity


def test_face_accuracy_and_auc() -> None:
    prob = np.array([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    assert tf.face_accuracy(prob, np.array([1, 0, 0, 0])) == 0.75
    assert tf.face_accuracy(prob, np.array([1, 0, 0, 0]), threshold=0.8) == 1.0
    assert tf.roc_auc(prob[:, 1], np.array([1, 0, 1, 0])) == 1.0
    assert tf.roc_auc(prob[:, 1], np.array([0, 1, 0, 1])) == 0.0
    assert tf.roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    with pytest.raises(ValueError):
        tf.roc_auc(np.array([0.5]), np.array([1]))


def test_output_fidelity() -> None:
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    other = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(tf.cosine_per_sample(ref, other), [1.0, 0.0, 1.0])
    assert tf.relative_error(ref, ref) == 0.0
    np.testing.assert_allclose(tf.relative_error(ref, 1.5 * ref), 0.5)
    assert tf.argmax_agreement(ref[:2], other[:2]) == 0.5
    assert tf.argmax_agreement(np.ones((3, 1)), np.ones((3, 1))) is None
    fid = tf.output_fidelity("y", ref[:2], other[:2])
    assert (fid.cosine_mean, fid.cosine_min, fid.argmax_agreement) == (0.5, 0.0, 0.5)


def test_prune_args_and_kinds() -> None:
    args = tf.parse_prune_args(["criterion=l2", "round_to=1", "calibration={calib}"])
    assert args == {"criterion": "l2", "round_to": 1, "calibration": "{calib}"}
    bound = tf.bind_prune_args(args, tf.KINDS["crepe"])
    assert bound["calibration"] == str(tf.KINDS["crepe"].calib_data) and bound["round_to"] == 1
    with pytest.raises(SystemExit):
        tf.parse_prune_args(["no-equals"])
    assert tf.kind_of_extra(str(TRAINED / "rnet_dynamo.onnx"))[1] == "mtcnn_rnet"
    assert tf.kind_of_extra(f"crepe={TRAINED / 'rnet_dynamo.onnx'}")[1] == "crepe"
    assert {kind for _, kind in tf.checked_in_models()} == set(tf.KINDS)


def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "t.md"
    code = tf.main(["--ratios", "0.2", "--models", "rnet_dynamo.onnx", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "| rnet_dynamo.onnx | 0.2 | 1.000 |" in text
