"""Attention heads and FFN width on tiny transformer blocks (every form in tests/attention_graphs.py)."""

from __future__ import annotations

import pytest

import onnxprune
from tests.attention_graphs import DH, block

FORMS = {
    "per-projection, constant targets": {},
    "per-projection, run-time targets": {"runtime_targets": True},
    "fused QKV + Split": {"fused_qkv": True},
    "fused QKV, run-time targets": {"fused_qkv": True, "runtime_targets": True},
    "GQA repeat_kv (2 KV heads for 4)": {"kv_heads": 2, "runtime_targets": True},
    "SwiGLU feed-forward": {"gated_ffn": True},
}
SHAPES = [(1, 5), (2, 9), (3, 16)]


def _shapes(batch: int, seq: int) -> dict[str, list[int]]:
    return {"x": [batch, seq, 16], "mask": [batch, 1, 1, seq]}


@pytest.mark.parametrize("form", list(FORMS))
def test_heads_form_one_group_and_prune_with_parity(form):
    kwargs = FORMS[form]
    model = block(**kwargs)
    analysis = onnxprune.analyze(model)
    head_groups = [g for g in analysis.prunable_groups if g.kind == "heads"]
    assert len(head_groups) == 1, [(g.size, g.kind, g.describe()) for g in analysis.groups]
    expected_units = kwargs.get("kv_heads", 4)
    assert head_groups[0].size == expected_units
    ffn_groups = [g for g in analysis.prunable_groups if g.kind == "channels" and g.size == 32]
    assert len(ffn_groups) == 1
    if kwargs.get("gated_ffn"):
        assert {"w_gate:1", "w_up:1", "w_down:0"} <= {m.key for m in ffn_groups[0].weight_members}
    result = onnxprune.prune(model, ratio=0.5)
    assert result.report.params_after < result.report.params_before
    for batch, seq in SHAPES:
        report = onnxprune.validate(model, result.model, result.plan, input_shapes=_shapes(batch, seq))
        assert report, f"{form} at batch {batch}, sequence {seq}:\n{report}"


def test_gqa_prunes_whole_kv_groups():
    model = block(kv_heads=2, runtime_targets=True)
    result = onnxprune.prune(model, head_ratio=0.5, ffn_ratio=0.0)
    slices = {s.tensor: s for s in result.plan.slices}
    assert len(slices["wk"].keep) == DH  # one KV head of two
    assert len(slices["wq"].keep) == 2 * DH  # with both of its query heads
    assert "w_up" not in slices  # ffn_ratio 0 leaves the FFN
    rewrites = {(r.node, r.what): r.after for r in result.plan.rewrites}
    assert rewrites[("k_e", "expand shape")][1] == 1


def test_fused_qkv_prunes_the_three_parts_together():
    result = onnxprune.prune(block(fused_qkv=True), head_ratio=0.5, ffn_ratio=0.0)
    keep = next(s.keep for s in result.plan.slices if s.tensor == "w_qkv")
    parts = [[i - 16 * p for i in keep if 16 * p <= i < 16 * (p + 1)] for p in range(3)]
    assert parts[0] == parts[1] == parts[2] and len(parts[0]) == 2 * DH
    assert any(r.what == "split" and r.after == [8, 8, 8] for r in result.plan.rewrites)


def test_head_and_ffn_ratios_apply_apart():
    model = block()
    result = onnxprune.prune(model, head_ratio=0.25, ffn_ratio=0.5)
    kept = {g.size: len(g.keep) for g in result.plan.groups if g.size in (4, 32)}
    assert kept == {4: 3, 32: 16}


def test_hidden_width_is_pinned_by_layer_norm_and_says_so():
    analysis = onnxprune.analyze(block())
    pinned = [g for g in analysis.pinned_groups if any(m.key == "wo:1" for m in g.weight_members)]
    assert pinned and any("LayerNormalization" in str(b) for b in pinned[0].barriers)
