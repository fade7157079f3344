"""Tiny transformer blocks built with onnx.helper, in the forms real exporters emit
(shared/EXPORTERS.md): per-projection or fused QKV, constant or run-time Reshape targets,
grouped-query attention with repeat_kv, plain or gated (SwiGLU) feed-forward."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D = 16  # hidden width
DH = 4  # head dim


def block(
    *,
    heads: int = 4,
    kv_heads: int | None = None,
    fused_qkv: bool = False,
    runtime_targets: bool = False,
    gated_ffn: bool = False,
    ffn: int = 32,
    seed: int = 0,
) -> onnx.ModelProto:
    """x[B, S, D] -> attention -> residual -> LayerNorm -> FFN -> residual -> y[B, S, D]."""
    rng = np.random.default_rng(seed)
    kv_heads = kv_heads or heads
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name))
        return name

    def const(name: str, values, dtype=np.int64) -> str:
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def heads_target(name: str, count: int) -> str:
        if not runtime_targets:
            return const(name, [0, 0, count, DH])
        shape = node("Shape", ["x"], f"{name}_shape")
        b = node("Gather", [shape, const(f"{name}_i0", [0])], f"{name}_b")
        s = node("Gather", [shape, const(f"{name}_i1", [1])], f"{name}_s")
        return node("Concat", [b, s, const(f"{name}_rest", [-1, DH])], name, axis=0)

    widths = {"q": heads * DH, "k": kv_heads * DH, "v": kv_heads * DH}
    if fused_qkv:
        total = sum(widths.values())
        fused = node(
            "Add",
            [node("MatMul", ["x", weight("w_qkv", (D, total))], "qkv0"), weight("b_qkv", (total,))],
            "qkv",
        )
        split = helper.make_node(
            "Split",
            [fused, const("qkv_sizes", list(widths.values()))],
            ["q1", "k1", "v1"],
            name="split_qkv",
            axis=-1,
        )
        nodes.append(split)
    else:
        for p, width in widths.items():
            node(
                "Add",
                [node("MatMul", ["x", weight(f"w{p}", (D, width))], f"{p}0"), weight(f"b{p}", (width,))],
                f"{p}1",
            )
    q = node(
        "Transpose", [node("Reshape", ["q1", heads_target("q_target", heads)], "q2")], "q3", perm=[0, 2, 1, 3]
    )
    k = node(
        "Transpose",
        [node("Reshape", ["k1", heads_target("k_target", kv_heads)], "k2")],
        "k3",
        perm=[0, 2, 1, 3],
    )
    v = node(
        "Transpose",
        [node("Reshape", ["v1", heads_target("v_target", kv_heads)], "v2")],
        "v3",
        perm=[0, 2, 1, 3],
    )
    if kv_heads != heads:  # repeat_kv: Unsqueeze(2) -> Expand -> Reshape, the head counts baked in
        rep = heads // kv_heads
        expanded = []
        for name, t in (("k", k), ("v", v)):
            u = node("Unsqueeze", [t, const(f"{name}_ax", [2])], f"{name}_u")
            shape = node("Shape", [t], f"{name}_shape")
            b = node("Gather", [shape, const(f"{name}_g0", [0])], f"{name}_b")
            s = node("Gather", [shape, const(f"{name}_g2", [2])], f"{name}_s")
            target = node(
                "Concat",
                [b, const(f"{name}_mid", [kv_heads, rep]), s, const(f"{name}_dh", [DH])],
                f"{name}_expand_target",
                axis=0,
            )
            e = node("Expand", [u, target], f"{name}_e")
            merged = node(
                "Concat",
                [b, const(f"{name}_h", [heads]), s, const(f"{name}_dh2", [DH])],
                f"{name}_merge_target",
                axis=0,
            )
            expanded.append(node("Reshape", [e, merged], f"{name}_rep"))
        k, v = expanded
    kt = node("Transpose", [k], "kt", perm=[0, 1, 3, 2])
    scores = node("Mul", [node("MatMul", [q, kt], "s0"), const("scale", 1 / np.sqrt(DH), np.float32)], "s1")
    probs = node("Softmax", [node("Add", [scores, "mask"], "s2")], "p", axis=-1)
    o = node("Transpose", [node("MatMul", [probs, v], "o0")], "o1", perm=[0, 2, 1, 3])
    o = node("Reshape", [o, const("o_target", [0, 0, heads * DH])], "o2")
    attn = node("Add", [node("MatMul", [o, weight("wo", (heads * DH, D))], "o3"), weight("bo", (D,))], "o4")
    h = node(
        "LayerNormalization",
        [node("Add", [attn, "x"], "r1"), weight("ln_g", (D,)), weight("ln_b", (D,))],
        "ln",
        axis=-1,
    )
    up = node("MatMul", [h, weight("w_up", (D, ffn))], "up")
    if gated_ffn:
        gate = node("MatMul", [h, weight("w_gate", (D, ffn))], "gate")
        act = node("Mul", [node("Mul", [gate, node("Sigmoid", [gate], "sig")], "silu"), up], "act")
    else:
        act = node("Relu", [node("Add", [up, weight("b_up", (ffn,))], "up_b")], "act")
    down = node("MatMul", [act, weight("w_down", (ffn, D))], "down")
    node("Add", [down, h], "y")
    graph = helper.make_graph(
        nodes,
        "block",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", D]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 1, 1, "S"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", D])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model
