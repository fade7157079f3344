"""Whole architecture families as real exporters emit them (models/torchvision, models/keras,
models/transformers): every file prunes to a valid, mask-equivalent, smaller model."""

from __future__ import annotations

import json

import onnx
import pytest

import onnxprune
from tests.conftest import MODELS


def _files(folder: str) -> list:
    provenance = json.loads((MODELS / folder / "PROVENANCE.json").read_text())
    return [MODELS / folder / name for name in sorted(provenance)]


CNN = _files("torchvision") + _files("keras")
TRANSFORMERS = _files("transformers")


def _text_shapes(model: onnx.ModelProto, batch: int, seq: int) -> dict[str, list[int]]:
    """Full shapes for inputs with a dynamic sequence axis ([batch, sequence] ids and masks)."""
    shapes = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 2 and not dims[1].dim_value:
            shapes[vi.name] = [batch, seq]
    return shapes


@pytest.mark.parametrize("path", CNN, ids=[f"{p.parent.name}/{p.stem}" for p in CNN])
def test_cnn_family_prunes_with_parity(path):
    result = onnxprune.prune(path, ratio=0.4)
    report = onnxprune.validate(path, result.model, result.plan)
    assert report, str(report)
    assert result.report.params_after < result.report.params_before
    assert result.report.prunable_macs_fraction is not None and result.report.prunable_macs_fraction > 0.5


@pytest.mark.parametrize("path", TRANSFORMERS, ids=[p.stem for p in TRANSFORMERS])
def test_transformer_heads_and_ffn_prune_with_parity_at_three_shapes(path):
    original = onnx.load(path)
    analysis = onnxprune.analyze(original)
    heads = [g for g in analysis.prunable_groups if g.kind == "heads"]
    assert heads, "no prunable attention heads"
    result = onnxprune.prune(original, head_ratio=0.5, ffn_ratio=0.3)
    assert result.report.params_after < result.report.params_before
    assert any(len(g.keep) < g.size for g in result.plan.groups if g.size == heads[0].size)
    for batch, seq in [(1, 5), (2, 9), (3, 16)]:
        report = onnxprune.validate(
            original, result.model, result.plan, input_shapes=_text_shapes(original, batch, seq)
        )
        assert report, f"batch {batch}, sequence {seq}:\n{report}"


@pytest.mark.parametrize("path", [p for p in TRANSFORMERS if "bert" in p.stem], ids=lambda p: p.stem)
def test_transformer_hidden_width_is_pinned_by_layer_norm(path):
    analysis = onnxprune.analyze(path)
    reasons = [str(b) for g in analysis.pinned_groups for b in g.barriers]
    assert any("LayerNormalization normalises" in r for r in reasons)


QUANTIZED = _files("quantized")
KERAS_SEQUENCE = _files("keras_seq") + _files("jax")
CONTROL_FLOW = _files("controlflow")


def _sequence_shapes(model: onnx.ModelProto, batch: int, seq: int) -> dict[str, list[int]]:
    """Full shapes for [batch, sequence, features] inputs with a dynamic sequence axis."""
    shapes = _text_shapes(model, batch, seq)
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 3 and not dims[1].dim_value:
            shapes[vi.name] = [batch, seq, dims[2].dim_value]
    return shapes


@pytest.mark.parametrize("path", QUANTIZED + KERAS_SEQUENCE, ids=[p.stem for p in QUANTIZED + KERAS_SEQUENCE])
def test_quantized_and_sequence_models_cut_a_tenth_at_0_3_with_parity(path):
    """ONNX Runtime's static QDQ (per-channel) and dynamic quantization, Keras Dense on
    sequences through tf2onnx: pinned whole before their rules; now at least 10 % of the
    parameters go at ratio 0.3, mask-equivalent at two batch and sequence sizes. (The JAX
    Dense-on-sequence model through jax2tf and tf2onnx, models/jax, pruned without a new rule.)"""
    original = onnx.load(path)
    result = onnxprune.prune(original, ratio=0.3)
    assert result.report.params_after <= 0.9 * result.report.params_before, result.report
    for batch, seq in [(1, 5), (2, 9), (1, 32)]:
        report = onnxprune.validate(
            original, result.model, result.plan, input_shapes=_sequence_shapes(original, batch, seq) or None
        )
        assert report, f"batch {batch}, sequence {seq}:\n{report}"


QUANTIZED_CNN = [p for p in QUANTIZED if "bert" not in p.stem]


@pytest.mark.parametrize("path", QUANTIZED_CNN, ids=[p.stem for p in QUANTIZED_CNN])
def test_quantized_cnn_parity_is_bit_exact(path):
    """Integer paths computed as the graph says (QDQ fusions off) agree exactly with the masked
    original: the one-step allowance (docs/quantization.md) is not used on these models. (The
    quantized BERT's float LayerNorm and softmax between its integer products round in another
    order: it passes at float tolerance.)"""
    original = onnx.load(path)
    result = onnxprune.prune(original, ratio=0.3)
    report = onnxprune.validate(original, result.model, result.plan)
    assert report.parity and all(o.max_abs == 0 for o in report.parity.outputs), str(report.parity)


@pytest.mark.parametrize("path", CONTROL_FLOW, ids=[p.stem for p in CONTROL_FLOW])
def test_control_flow_models_prune_outside_their_subgraphs(path):
    original = onnx.load(path)
    analysis = onnxprune.analyze(original)
    ops = {n.op_type for n in original.graph.node} & {"If", "Loop", "Scan"}
    assert ops and any(b.op_type in ops for b in analysis.barriers), "the control-flow barrier is not named"
    result = onnxprune.prune(original, ratio=0.3)
    assert result.report.params_after < result.report.params_before
    report = onnxprune.validate(original, result.model, result.plan)
    assert report, str(report)


def test_keras_attention_projections_are_pinned_with_a_named_reason():
    """Keras MultiHeadAttention through tf2onnx: the heads are merged with the batch by
    Reshape targets computed at run time (ReduceProd / Max of Shape entries), which onnxprune
    does not follow; `analyze` says so, and the FFN is what prunes."""
    analysis = onnxprune.analyze(MODELS / "keras_seq" / "encoder.onnx")
    query_bias = "encoder_1/mha_1/query_1/Add/ReadVariableOp:0"
    pinned = [g for g in analysis.groups if any(m.tensor == query_bias for m in g.members)]
    assert pinned and not any(g.prunable for g in pinned)
    reasons = " ".join(str(b) for g in pinned for b in g.barriers)
    assert "Reshape" in reasons and "run time" in reasons, reasons
    ffn = [g for g in analysis.prunable_groups if any("ffn1" in m.tensor for m in g.members)]
    assert ffn and ffn[0].size == 128


def test_jax2tf_ffn_hidden_axis_prunes_and_the_model_width_stays():
    """jax2tf's graph lowering writes ``x @ W`` on [B, S, F] as a TF ``Einsum``, which tf2onnx
    turns into one 3-D ``MatMul`` (no Reshape around it): the 48-wide FFN hidden axis is
    prunable; the 16-wide model axis is pinned by the hand-written layer norm's mean (ReduceSum
    over the last axis), as a LayerNormalization pins it."""
    model = onnx.load(MODELS / "jax" / "dense_seq.onnx")
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    analysis = onnxprune.analyze(model)
    hidden = [g for g in analysis.prunable_groups if g.size == 48]
    assert hidden and {shapes.get(m.tensor) for m in hidden[0].members} >= {(16, 48), (48, 16)}
    width = [g for g in analysis.pinned_groups if g.size == 16]
    assert width and any(b.op_type == "ReduceSum" for g in width for b in g.barriers)
