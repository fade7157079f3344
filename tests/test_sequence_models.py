"""The patterns of models/sequence as both torch exporters (and tf2onnx, for Keras LSTMs) emit
them: recurrent layers (ONNX LSTM/GRU/RNN ops, and dynamo's unrolled tanh RNN), a CNN +
bidirectional LSTM text recogniser, BlazeFace-style residual blocks that pad channels, and a byte
classifier's one-hot vocabulary.
Every file prunes at 0.3 to a valid, mask-equivalent model at least 10 % smaller."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.cli import main
from tests.conftest import MODELS

FOLDER = MODELS / "sequence"
FILES = [FOLDER / name for name in sorted(json.loads((FOLDER / "PROVENANCE.json").read_text()))]
RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gates


def _nodes(model: onnx.ModelProto, op_types) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in op_types]


@functools.cache
def _pruned(path: Path) -> onnxprune.PruneResult:
    # round_to 1: these models are small (16-32 channels), and kept counts round *up* to the
    # alignment, which would leave such groups whole at 0.3; the rules are what is tested here
    return onnxprune.prune(path, ratio=0.3, round_to=1)


def _with(op_types) -> list[Path]:
    return [p for p in FILES if _nodes(onnx.load(p, load_external_data=False), op_types)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_prunes_with_parity_and_cuts_a_tenth(path):
    result = _pruned(path)
    report = onnxprune.validate(path, result.model, result.plan)
    assert report, str(report)
    before, after = result.report.params_before, result.report.params_after
    assert after <= 0.9 * before, f"{path.name}: {before} -> {after} parameters"


RECURRENT_FILES = _with(RECURRENT)


def test_both_exporters_emit_recurrent_ops_except_dynamo_for_a_tanh_rnn():
    assert {p.stem for p in FILES} - {p.stem for p in RECURRENT_FILES} == {
        "rnn_tagger_dynamo",  # unrolled into MatMul / Add / Tanh per step: pruned by the plain rules
        "blazeface_dynamo",
        "blazeface_torchscript",
        "byte_cnn_dynamo",
        "byte_cnn_torchscript",
    }


@pytest.mark.parametrize("path", RECURRENT_FILES, ids=lambda p: p.stem)
def test_every_recurrent_layer_loses_hidden_units(path):
    result = _pruned(path)
    layers = _nodes(onnx.load(path), RECURRENT)
    rewritten = {r.node for r in result.plan.rewrites if r.what == "hidden_size"}
    assert rewritten == {n.name for n in layers}
    shapes = {t.name: list(t.dims) for t in result.model.graph.initializer}
    shapes.update(
        {
            vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in result.model.graph.value_info
        }
    )
    for node in _nodes(result.model, RECURRENT):
        hidden = next(a.i for a in node.attribute if a.name == "hidden_size")
        assert shapes[node.input[2]][1:] == [RECURRENT[node.op_type] * hidden, hidden], node.name


@pytest.mark.parametrize("path", _with(("Pad",)), ids=lambda p: p.stem)
def test_padded_identity_paths_keep_their_pad_amounts(path):
    original, result = onnx.load(path), _pruned(path)
    before = {t.name: numpy_helper.to_array(t).tolist() for t in original.graph.initializer}
    after = {t.name: numpy_helper.to_array(t).tolist() for t in result.model.graph.initializer}
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in result.model.graph.value_info
    }
    pads = _nodes(result.model, ("Pad",))
    assert len(pads) == 3
    for node in pads:
        if node.input[1] in before:  # a constant amount (dynamo's): unchanged
            assert after[node.input[1]] == before[node.input[1]]
    widened = sorted(shapes[n.output[0]][1] - shapes[n.input[0]][1] for n in pads)
    assert widened == [4, 4, 16]  # BlazeBlocks 24->28, 28->32, 32->48
    kept = {s.tensor: s for s in result.plan.slices}
    assert len(kept["stem.0.weight"].keep) < 24  # the residual trunk prunes through the Pads


@pytest.mark.parametrize("path", _with(("OneHot", "Equal")), ids=lambda p: p.stem)
def test_byte_vocabulary_stays_and_analyze_says_why(path):
    result = _pruned(path)
    assert not [s for s in result.plan.slices if s.tensor == "conv1.weight" and s.axis == 1]
    conv1 = next(t for t in result.model.graph.initializer if t.name == "conv1.weight")
    assert conv1.dims[1] == 256 and conv1.dims[0] < 64  # the 256 byte values stay, filters go
    reasons = [str(b) for b in onnxprune.analyze(path).barriers]
    assert any("vocabulary of" in r and "graph input" in r for r in reasons), reasons


@pytest.mark.parametrize("name", ["byte_cnn_dynamo.onnx", "byte_cnn_torchscript.onnx"])
def test_onnxprune_analyze_prints_the_vocabulary_barrier(name, capsys):
    assert main(["analyze", str(FOLDER / name)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the table wraps long reasons
    assert "is not a channel axis" in text and "graph input" in text
