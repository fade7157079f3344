"""Opset-23 fused attention ops: Attention (3-D and 4-D, GQA) and RotaryEmbedding."""

from __future__ import annotations

import pytest

from tests.rule_cases import Case, attr_is, check_pruning, check_structure, ids, runnable, then


def projections(body: str, *, kv: int = 8, weights: str = "", y: str = "1, 6, 16") -> str:
    """x[1, 6, 16] -> q (16), k and v (`kv` wide) projections -> body -> o[1, 6, 16] -> wo -> y."""
    return f"""g (float[1, 6, 16] x) => (float[{y}] y)
    <float[16, 16] wq, float[16, {kv}] wk, float[16, {kv}] wv, float[16, 16] wo{weights}> {{
    [proj_q] q = MatMul (x, wq)
    [proj_k] k = MatMul (x, wk)
    [proj_v] v = MatMul (x, wv)
    {body}
    [proj_o] y = MatMul (o, wo)
}}"""


FOUR_D = """[q4] qh = Reshape (q, qs)
    [k4] kh = Reshape (k, ks)
    [v4] vh = Reshape (v, ks)
    [qt] qt = Transpose <perm = [0, 2, 1, 3]> (qh)
    [kt] kt = Transpose <perm = [0, 2, 1, 3]> (kh)
    [vt] vt = Transpose <perm = [0, 2, 1, 3]> (vh)
    [attn] a = Attention (qt, kt, vt)
    [back] b = Transpose <perm = [0, 2, 1, 3]> (a)
    [merge] o = Reshape (b, os)"""

CASES = [
    Case(
        "attention-3d-gqa",
        projections("[attn] o = Attention <q_num_heads = 4, kv_num_heads = 2> (q, k, v)"),
        opset=23,
        groups=1,
        prunable={"wk:1": 2, "wv:1": 2, "wq:1": 2, "wo:0": 2},
        rewrites=(("attn", "q_num_heads"), ("attn", "kv_num_heads")),
        check=then(attr_is("attn", "q_num_heads", 2), attr_is("attn", "kv_num_heads", 1)),
    ),
    Case(
        "attention-3d-mha",
        projections("[attn] o = Attention <q_num_heads = 4, kv_num_heads = 4> (q, k, v)", kv=16),
        opset=23,
        groups=1,
        prunable={"wq:1": 4, "wk:1": 4, "wv:1": 4, "wo:0": 4},
        check=attr_is("attn", "q_num_heads", 2),
    ),
    Case(
        "attention-4d-gqa",
        projections(
            FOUR_D,
            weights=", int64[4] qs = {1, 6, 4, 4}, int64[4] ks = {1, 6, 2, 4}, int64[3] os = {1, 6, 16}",
        ),
        opset=23,
        groups=1,
        prunable={"wk:1": 2, "wq:1": 2, "wo:0": 2},
        rewrites=(("q4", "shape"), ("k4", "shape"), ("merge", "shape")),
    ),
    Case(
        "rotary-3d-then-attention",
        projections(
            """[rope] qr = RotaryEmbedding <num_heads = 4> (q, cos, sin, pos)
    [attn] o = Attention <q_num_heads = 4, kv_num_heads = 4> (qr, k, v)""",
            kv=16,
            weights=", float[8, 2] cos, float[8, 2] sin, int64[1, 6] pos",
        ),
        opset=23,
        groups=1,
        prunable={"wq:1": 4, "wk:1": 4, "wo:0": 4},
        rewrites=(("rope", "num_heads"), ("attn", "q_num_heads")),
        check=attr_is("rope", "num_heads", 2),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
