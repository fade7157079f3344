"""Hypothesis strategies that build random, valid CNN-like ONNX models.

`cnn_graphs()` draws a model the way an exporter would write one: a graph input
``x[N, C, H, W]`` (batch 1 or dynamic), a main path of blocks, and optionally a classifier head.
Every block uses ops the analyzer has a rule for (plus, now and then, one it has none for, to
exercise barriers):

- Conv of every kind: plain 1x1 and 3x3 (padded, unpadded, SAME_UPPER, stride 2), depthwise with
  multiplier 1 or 2, grouped with group 2 or 4, with or without bias; ConvTranspose (plain,
  depthwise, grouped; stride-2 upsampling or padded 3x3).
- Shared initializers: one conv weight read by two convs (in sequence or in parallel branches),
  and any parameter reused by a later one of the same shape, whatever its op (BatchNorm
  scale / conv bias / Gemm bias, a [1, C, 1, 1] Mul constant / the weight of a C -> 1 conv, a
  conv / ConvTranspose weight), as exporters that deduplicate constants write them; equal shape
  constants deduplicated the same way; some constants written as Constant nodes.
- BatchNormalization, InstanceNormalization; activations Relu, Sigmoid, HardSwish (HardSigmoid
  below opset 14), Clip, LeakyRelu, PRelu with a per-channel slope; Mul, Add, Div, Sub, Max or
  Min by a per-channel, scalar or [C, H, W] constant; Identity, Dropout.
- Residual Add or Sum of 2 or 3 producers (identity or conv branches, a producer possibly twice);
  Concat of concats (a tensor may appear twice); Split along channels (equal sizes via
  ``num_outputs`` at opset 18) feeding a Concat in another order, separate convs, or a continuing
  piece with the rest unused or made graph outputs; Slice along channels (negative starts,
  clamped ends, step 2, with or without ``axes``) or space; Gather of channels or of rows.
- Squeeze-excitation: ReduceMean over H, W (keepdims) or GlobalAveragePool, Conv, Relu, Conv,
  Sigmoid, Mul; x + GlobalAveragePool(branch); a spatial gate (ReduceMean over channels).
- MaxPool, AveragePool, GlobalAveragePool, Pad (spatial, sometimes channels), Resize (scales, or
  sizes at batch 1).
- Layout: Transpose to NHWC (Relu, Mul / Add by a [C] constant or MatMul by a [C, D] weight
  inside) and back; channels to axis 2 and back ([C, 1] constant between); H <-> W; Unsqueeze /
  Squeeze; static Reshape (flatten space and back, with a constant or a W[D, C] @ x MatMul
  between; channels merged with H; tokens [N, HW, C] through a MatMul; channel shuffle through
  a 5-D Transpose); targets with 0 and -1.
- Ops that pin: Softmax over channels or W, LayerNormalization over W, channel Gather, channel
  Pad; and ops without a rule: Einsum identity, DepthToSpace / SpaceToDepth.
- Heads: Flatten (axis 1 or 2), a static Reshape, a Shape -> Gather -> Concat Reshape (the
  TorchScript ``x.view(x.size(0), -1)``), NHWC Flatten, or GlobalAveragePool + Flatten / Squeeze,
  into one or two Gemms (transA / transB, bias [K] or [1, K]) or MatMuls; branches that reach
  extra graph outputs.
- Sometimes: weights also listed as graph inputs (older exporters), metadata_props, unnamed nodes.

Opset is drawn from 13..18 with IR version 8; channel counts of convs 1..24, spatial sizes 4..10,
weights random non-zero float32 (seeded from the draw, so a shrunk example is reproducible).
`check_valid` runs onnx.checker (full check) and ONNX Runtime; the strategy calls it on every
model it builds, so a generator bug shows up as a clear error rather than as a pruner failure.
A model that passes the checker and runs without ONNX Runtime's graph optimizations but fails
(or gives other shapes) with them is rejected (`hypothesis.reject`), not reported: whatever the
cause, the optimized session is what a pruned model would be judged against. The case seen so
far: ORT 1.32's ConcatSliceElimination ignores the steps of a Slice without an axes input after
a Concat and builds a graph whose shapes are wrong.

The single ops (and the naming, weights and nodes under them) are built by
`tests/graph_builder.py`; the blocks, heads, the strategy and the checks are here.

>>> from hypothesis import given
>>> @given(cnn_graphs())  # doctest: +SKIP
... def test_something(model): ...
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import reject
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.graph_builder import MAX_CHANNELS, Act, GraphBuilder

MIN_OPSET, MAX_OPSET = 13, 18
IR_VERSION = 8
INT64_MAX = 2**63 - 1

# Block kinds of the main path, simplest first: hypothesis shrinks towards the start of the list.
BLOCKS = (
    "conv",
    "act",
    "bn",
    "const",
    "pool",
    "residual",
    "concat",
    "split",
    "slice",
    "se",
    "nhwc",
    "reshape",
    "shared",
    "side_output",
    "pad",
    "resize",
    "unknown",
    "conv_transpose",
    "misc",
    "swap",
    "gap_add",
)
HEADS = (
    "none",
    "flatten_gemm",
    "gap_gemm",
    "reshape_gemm",
    "squeeze_gemm",
    "flatten_matmul",
    "flatten2_gemm",
    "shape_reshape_gemm",
    "nhwc_flatten_gemm",
)


class GeneratorError(AssertionError):
    """The strategy built a model that is not valid: a bug in this file, not in onnxprune."""


class RuntimeOptimizerError(GeneratorError):
    """ONNX Runtime fails on (or miscomputes) a valid model only with its graph optimizations on:
    ORT's bug, which no pruning result could be judged against."""


class _Builder(GraphBuilder):
    """The blocks of the main path and the classifier heads, made of GraphBuilder's single ops."""

    # -- blocks -------------------------------------------------------------------------------

    def chain(self, x: Act, cout: int) -> Act:
        """A short shape-keeping branch from `x` to `cout` channels: conv [bn] [act]."""
        y = self.conv(x, cout, keep_space=True)
        if self.draw(st.booleans()):
            y = self.bn(y)
        if self.draw(st.booleans()):
            y = self.act(y)
        return y

    def residual(self, x: Act) -> Act:
        k = self.draw(st.integers(2, 3))
        identity = self.draw(st.booleans())
        cout = x.c if identity else self.channels()
        branches = [x] if identity else []
        while len(branches) < k:
            again = branches and self.draw(st.integers(0, 3)) == 0  # Add(b, b): one producer twice
            branches.append(branches[-1] if again else self.chain(x, cout))
        branches = [branches[i] for i in self.draw(st.permutations(range(k)))]
        if k == 3 and self.draw(st.booleans()):
            return Act(self.op("Sum", [b.name for b in branches]), cout, x.h, x.w)
        name = branches[0].name
        for b in branches[1:]:
            name = self.op("Add", [name, b.name])
        return Act(name, cout, x.h, x.w)

    def concat(self, x: Act, depth: int = 0) -> Act:
        parts: list[Act] = []
        for _ in range(self.draw(st.integers(2, 3))):
            kind = self.draw(
                st.sampled_from(["branch", "self", "nested"] if depth < 2 else ["branch", "self"])
            )
            if kind == "self":
                parts.append(x)
            elif kind == "nested":
                parts.append(self.concat(x, depth + 1))
            else:
                parts.append(self.chain(x, self.channels(1, 12)))
        axis = self.draw(st.sampled_from([1, -3]))
        name = self.op("Concat", [p.name for p in parts], axis=axis)
        return Act(name, sum(p.c for p in parts), x.h, x.w)

    def split(self, x: Act) -> Act:
        if x.c < 2:
            return self.conv(x)
        k = self.draw(st.integers(2, min(3, x.c)))
        cuts = sorted(
            self.draw(st.lists(st.integers(1, x.c - 1), min_size=k - 1, max_size=k - 1, unique=True))
        )
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, x.c], strict=True)]
        k = len(sizes)
        axis = self.draw(st.sampled_from([1, -3]))
        if self.opset >= 18 and len(set(sizes)) == 1 and self.draw(st.booleans()):
            outs = self.node("Split", [x.name], n_out=k, axis=axis, num_outputs=k)
        else:
            outs = self.node("Split", [x.name, self.ints(sizes)], n_out=k, axis=axis)
        pieces = [Act(o, s, x.h, x.w) for o, s in zip(outs, sizes, strict=True)]
        use = self.draw(st.sampled_from(["concat", "convs_add", "convs_concat", "first"]))
        if use == "concat":
            order = self.draw(st.permutations(range(k)))
            parts = [pieces[i] if self.draw(st.booleans()) else self.act(pieces[i]) for i in order]
            return Act(self.op("Concat", [p.name for p in parts], axis=1), x.c, x.h, x.w)
        if use == "convs_add":
            cout = self.channels()
            parts = [self.chain(p, cout) for p in pieces]
            name = parts[0].name
            for p in parts[1:]:
                name = self.op("Add", [name, p.name])
            return Act(name, cout, x.h, x.w)
        if use == "convs_concat":
            parts = [self.chain(p, self.channels(1, 12)) for p in pieces]
            return Act(self.op("Concat", [p.name for p in parts], axis=1), sum(p.c for p in parts), x.h, x.w)
        for p in pieces[1:]:
            if self.draw(st.booleans()):
                self.output_act(self.act(p) if self.draw(st.booleans()) else p)
        return pieces[0]

    def slice(self, x: Act) -> Act:
        where = self.draw(st.sampled_from(["channels", "channels_step2", "space"]))
        if where == "space" or x.c < 2:
            if x.h < 2:
                return self.act(x)
            start = self.draw(st.integers(0, x.h - 1))
            end = self.draw(st.integers(start + 1, x.h))
            inputs = [x.name, self.ints([start]), self.ints([end]), self.ints([2])]
            return Act(self.op("Slice", inputs), x.c, end - start, x.w)
        start = self.draw(st.integers(0, x.c - 1))
        end = self.draw(st.integers(start + 1, x.c))
        step = 2 if where == "channels_step2" else 1
        out_c = len(range(start, end, step))
        start_v = start - x.c if self.draw(st.booleans()) else start
        end_v = INT64_MAX if end == x.c and self.draw(st.booleans()) else end
        axis = self.draw(st.sampled_from([1, -3, None]))
        if axis is None:  # no axes input: starts and ends cover axes 0 and 1
            inputs = [x.name, self.ints([0, start_v]), self.ints([INT64_MAX, end_v])]
            if step != 1:
                inputs += ["", self.ints([1, step])]
        else:
            inputs = [x.name, self.ints([start_v]), self.ints([end_v]), self.ints([axis])]
            if step != 1 or self.draw(st.booleans()):
                inputs.append(self.ints([step]))
        return Act(self.op("Slice", inputs), out_c, x.h, x.w)

    def se(self, x: Act) -> Act:
        if self.draw(st.booleans()):
            pooled = self.op("GlobalAveragePool", [x.name])
        elif self.opset >= 18:
            pooled = self.op("ReduceMean", [x.name, self.ints([2, 3])], keepdims=1)
        else:
            pooled = self.op("ReduceMean", [x.name], axes=[2, 3], keepdims=1)
        squeeze = self.conv(
            Act(pooled, x.c, 1, 1), self.channels(1, max(1, x.c)), kind="plain", keep_space=True
        )
        squeeze = Act(self.op("Relu", [squeeze.name]), squeeze.c, 1, 1)
        excite = self.conv(squeeze, x.c, kind="plain", keep_space=True)
        gate = self.op(self.draw(st.sampled_from(["Sigmoid", "HardSigmoid"])), [excite.name])
        inputs = [x.name, gate] if self.draw(st.booleans()) else [gate, x.name]
        return Act(self.op("Mul", inputs), x.c, x.h, x.w)

    def swap(self, x: Act) -> Act:
        """Channels moved to axis 2 ([N, H, C, W]) and back, a [C, 1] constant broadcast in between."""
        if self.draw(st.integers(0, 3)) == 0:  # swap H and W: channels stay on axis 1
            t = self.op("Relu", [self.op("Transpose", [x.name], perm=[0, 1, 3, 2])])
            return Act(self.op("Transpose", [t], perm=[0, 1, 3, 2]), x.c, x.h, x.w)
        t = self.op("Transpose", [x.name], perm=[0, 2, 1, 3])
        if self.draw(st.booleans()):
            t = self.op(self.draw(st.sampled_from(["Mul", "Add"])), [t, self.param((x.c, 1))])
        if self.draw(st.booleans()):
            t = self.op("Relu", [t])
        return Act(self.op("Transpose", [t], perm=[0, 2, 1, 3]), x.c, x.h, x.w)

    def gap_add(self, x: Act) -> Act:
        """x + GlobalAveragePool(branch(x)): a run-time [N, C, 1, 1] tensor broadcast over space."""
        pooled = self.op("GlobalAveragePool", [self.chain(x, x.c).name])
        op = self.draw(st.sampled_from(["Add", "Mul"]))
        inputs = [x.name, pooled] if self.draw(st.booleans()) else [pooled, x.name]
        return Act(self.op(op, inputs), x.c, x.h, x.w)

    def nhwc(self, x: Act) -> Act:
        t = self.op("Transpose", [x.name], perm=[0, 2, 3, 1])
        inner = self.draw(st.sampled_from(["none", "relu", "mul", "add", "matmul"]))
        c = x.c
        if inner == "relu":
            t = self.op("Relu", [t])
        elif inner in ("mul", "add"):
            t = self.op(inner.capitalize(), [t, self.weight((c,))])
        elif inner == "matmul":
            c = self.channels()
            t = self.op("MatMul", [t, self.weight((x.c, c), fan_in=x.c)])
        return Act(self.op("Transpose", [t], perm=[0, 3, 1, 2]), c, x.h, x.w)

    def reshape(self, x: Act) -> Act:
        kinds = ["flat_space", "merge_ch", "tokens"]
        if any(g < x.c and x.c % g == 0 for g in (2, 3, 4)):
            kinds += ["shuffle", "split5d"]
        kind = self.draw(st.sampled_from(kinds))
        b = self.batch_dim()
        if kind == "merge_ch":  # [N, C * H, W], a per-row constant, and back
            t = self.op("Reshape", [x.name, self.ints([b, x.c * x.h, x.w])])
            if self.draw(st.booleans()):
                t = self.op("Mul", [t, self.param((x.c * x.h, 1))])
            return Act(self.op("Reshape", [t, self.ints([self.batch_dim(), x.c, x.h, x.w])]), x.c, x.h, x.w)
        if kind == "tokens":  # [N, H * W, C] @ W[C, D] + b, as a vision transformer writes a 1x1 conv
            t = self.op("Reshape", [x.name, self.ints([b, x.c, x.h * x.w])])
            t = self.op("Transpose", [t], perm=[0, 2, 1])
            d = self.channels()
            t = self.op("MatMul", [t, self.weight((x.c, d), fan_in=x.c)])
            if self.draw(st.booleans()):
                t = self.op("Add", [t, self.param((d,))])
            t = self.op("Transpose", [t], perm=[0, 2, 1])
            return Act(self.op("Reshape", [t, self.ints([self.batch_dim(), d, x.h, x.w])]), d, x.h, x.w)
        if kind == "flat_space":
            hw = -1 if b != -1 and self.draw(st.booleans()) else x.h * x.w
            channel = self.draw(st.sampled_from([x.c, 0])) if b != -1 and hw != -1 else x.c
            flat = self.op("Reshape", [x.name, self.ints([b, channel, hw])])
            c = x.c
            inner = self.draw(st.sampled_from(["none", "mul", "matmul_left"]))
            if inner == "mul":
                flat = self.op("Mul", [flat, self.param((x.c, 1))])
            elif inner == "matmul_left":  # a 1x1 conv written as W[D, C] @ x[N, C, HW]
                c = self.channels()
                flat = self.op("MatMul", [self.weight((c, x.c), fan_in=x.c), flat])
            back = [self.batch_dim(), c, x.h, x.w]
            if back[0] != -1 and self.draw(st.booleans()):
                back[1] = -1 if inner == "matmul_left" else self.draw(st.sampled_from([0, -1]))
            return Act(self.op("Reshape", [flat, self.ints(back)]), c, x.h, x.w)
        g = self.draw(st.sampled_from([g for g in (2, 3, 4) if g < x.c and x.c % g == 0]))
        five = self.op("Reshape", [x.name, self.ints([b, g, x.c // g, x.h, x.w])])
        if kind == "shuffle":
            five = self.op("Transpose", [five], perm=[0, 2, 1, 3, 4])
        back = [self.batch_dim(), x.c, x.h, x.w]
        return Act(self.op("Reshape", [five, self.ints(back)]), x.c, x.h, x.w)

    def shared(self, x: Act) -> Act:
        """One conv weight read by two convs: in sequence (C -> C), or in two branches."""
        wshape = (x.c, x.c, 3, 3)
        wname = self.weight(wshape, fan_in=x.c * 9)
        bname = self.weight((x.c,)) if self.draw(st.booleans()) else None
        self.convs.setdefault((wshape, 1), []).append((wname, bname))
        inputs = [wname] + ([bname] if bname else [])

        def apply(a: Act) -> Act:
            return Act(
                self.op("Conv", [a.name, *inputs], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), x.c, x.h, x.w
            )

        how = self.draw(st.sampled_from(["sequence", "branches_add", "branches_concat"]))
        if how == "sequence":
            return apply(self.act(apply(x)))
        a, b = apply(x), apply(self.act(x))
        if how == "branches_add":
            return Act(self.op("Add", [a.name, b.name]), x.c, x.h, x.w)
        return Act(self.op("Concat", [a.name, b.name], axis=1), 2 * x.c, x.h, x.w)

    def side_output(self, x: Act, is_input: bool) -> Act:
        kind = self.draw(st.sampled_from(["tensor", "act", "conv"]))
        if kind == "tensor" and not is_input:
            self.output_act(x)
        elif kind == "conv":
            self.output_act(self.conv(x))
        else:
            self.output_act(self.act(x))
        return x

    def unknown(self, x: Act) -> Act:
        kinds = ["einsum"]
        if x.c % 4 == 0:
            kinds.append("depth_to_space")
        if x.h % 2 == 0 and x.w % 2 == 0:
            kinds.append("space_to_depth")
        kind = self.draw(st.sampled_from(kinds))
        if kind == "einsum":
            return Act(self.op("Einsum", [x.name], equation="nchw->nchw"), x.c, x.h, x.w)
        if kind == "depth_to_space":
            name = self.op("DepthToSpace", [x.name], blocksize=2)
            return Act(name, x.c // 4, x.h * 2, x.w * 2)
        return Act(self.op("SpaceToDepth", [x.name], blocksize=2), x.c * 4, x.h // 2, x.w // 2)

    def block(self, kind: str, x: Act, is_input: bool) -> Act:
        if kind == "side_output":
            return self.side_output(x, is_input)
        if kind == "resize" and max(x.h, x.w) > 10:
            kind = "act"
        return getattr(self, kind)(x)

    # -- heads --------------------------------------------------------------------------------

    def head(self, x: Act, kind: str) -> None:
        if kind == "none":
            self.output_act(x)
            return
        rows: int | str | None = self.batch
        if kind == "flatten_gemm" or kind == "flatten_matmul":
            features, flat = x.c * x.h * x.w, self.op("Flatten", [x.name], axis=1)
        elif kind == "flatten2_gemm":  # [N * C, H * W]: channels become rows
            features, flat = x.h * x.w, self.op("Flatten", [x.name], axis=2)
            rows = x.c if self.batch == 1 else None
        elif kind == "reshape_gemm":
            features = x.c * x.h * x.w
            flat = self.op("Reshape", [x.name, self.ints([0, -1] if self.batch != 1 else [1, features])])
        elif kind == "shape_reshape_gemm":  # x.view(x.size(0), -1) as TorchScript exports it
            features = x.c * x.h * x.w
            batch = self.op("Gather", [self.op("Shape", [x.name]), self.ints(0)], axis=0)
            batch = self.op("Unsqueeze", [batch, self.ints([0])])
            target = self.op("Concat", [batch, self.ints([-1])], axis=0)
            flat = self.op("Reshape", [x.name, target])
        elif kind == "nhwc_flatten_gemm":  # channels innermost: [N, H * W * C]
            features = x.c * x.h * x.w
            flat = self.op("Flatten", [self.op("Transpose", [x.name], perm=[0, 2, 3, 1])], axis=1)
        else:
            pooled = self.op("GlobalAveragePool", [x.name])
            features = x.c
            if kind == "squeeze_gemm":
                flat = self.op("Squeeze", [pooled, self.ints([2, 3])])
            else:
                flat = self.op("Flatten", [pooled], axis=1)
        for layer in range(self.draw(st.integers(1, 2))):
            out = self.channels(1, 16)
            if kind == "flatten_matmul":
                y = self.op("MatMul", [flat, self.weight((features, out), fan_in=features)])
                if self.draw(st.booleans()):
                    y = self.op("Add", [y, self.weight((out,))])
            else:
                trans_a, trans_b = self.draw(st.integers(0, 3)) == 0, self.draw(st.booleans())
                wshape = (out, features) if trans_b else (features, out)
                a = self.op("Transpose", [flat], perm=[1, 0]) if trans_a else flat
                inputs = [a, self.weight(wshape, fan_in=features)]
                if self.draw(st.booleans()):
                    inputs.append(self.param(self.draw(st.sampled_from([(out,), (1, out)]))))
                y = self.op("Gemm", inputs, transA=int(trans_a), transB=int(trans_b))
            if layer == 0 and self.draw(st.booleans()):
                y = self.op("Relu", [y])
            flat, features = y, out
        self.output(flat, [rows, features])


@st.composite
def cnn_graphs(draw: st.DrawFn, max_blocks: int = 8) -> onnx.ModelProto:
    """A random valid CNN-like ONNX model (see the module docstring for what it covers)."""
    opset = draw(st.integers(MIN_OPSET, MAX_OPSET))
    batch: int | str = draw(st.sampled_from([1, "N"]))
    seed = draw(st.integers(0, 2**32 - 1))
    b = _Builder(draw, opset, batch, np.random.default_rng(seed), name_nodes=draw(st.booleans()))
    b.constant_nodes = draw(st.integers(0, 3)) == 0
    x = Act("x", draw(st.integers(1, MAX_CHANNELS)), draw(st.integers(4, 10)), draw(st.integers(4, 10)))
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, x.c, x.h, x.w])
    main = x
    for _ in range(draw(st.integers(1, max_blocks))):
        main = b.block(draw(st.sampled_from(BLOCKS)), main, is_input=main is x)
    if main is x:
        main = b.conv(x)
    b.head(main, draw(st.sampled_from(HEADS)))
    inputs = [inp]
    if draw(st.integers(0, 7)) == 0:  # keep_initializers_as_inputs, as older exporters did
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.inits]
    graph = helper.make_graph(b.nodes, "generated", inputs, b.outputs, initializer=b.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=IR_VERSION,
        producer_name="hypothesis",
    )
    if draw(st.booleans()):  # apps read labels from metadata: pruning must keep it
        helper.set_model_props(model, {"labels": "cat,dog", "seed": str(seed)})
    try:
        check_valid(model)
    except RuntimeOptimizerError:
        reject()
    return model


def check_valid(model: onnx.ModelProto) -> None:
    """Raise GeneratorError unless `model` passes onnx.checker (full) and runs in ONNX Runtime."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise GeneratorError(
            f"generated model fails onnx.checker: {exc}\n{onnx.printer.to_text(model)}"
        ) from exc
    try:
        _check_runs(model, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    except GeneratorError as optimized:
        _check_runs(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)  # failing here too: ours
        raise RuntimeOptimizerError(f"only without graph optimizations: {optimized}") from optimized


def _check_runs(model: onnx.ModelProto, level: ort.GraphOptimizationLevel) -> None:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.graph_optimization_level = level
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        dims = [_fed_size(d) for d in model.graph.input[0].type.tensor_type.shape.dim]
        feed = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        results = session.run(None, {"x": feed})
    except Exception as exc:
        raise GeneratorError(
            f"generated model fails in ONNX Runtime: {exc}\n{onnx.printer.to_text(model)}"
        ) from exc
    for info, value in zip(model.graph.output, results, strict=True):
        want = [_fed_size(d) for d in info.type.tensor_type.shape.dim]
        if len(value.shape) != len(want) or any(
            w not in (None, v) for v, w in zip(value.shape, want, strict=True)
        ):
            raise GeneratorError(f"output {info.name} has shape {list(value.shape)}, declared {want}")


def _fed_size(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    """The size check_valid feeds or expects: the static value, 2 for the batch symbol, else None."""
    if dim.HasField("dim_value"):
        return dim.dim_value
    return 2 if dim.dim_param == "N" else None
