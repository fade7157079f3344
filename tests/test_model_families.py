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
