"""The model builder behind `graph_strategies.cnn_graphs`: naming, weights (shared the way
exporters deduplicate them, sometimes Constant nodes), nodes, and single ops (Conv of every
kind, ConvTranspose, BatchNorm, activations, constants, pools, Pad, Resize, and a few ops
without a channel rule). The blocks and heads built from them are in graph_strategies.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

MAX_CHANNELS = 24


@dataclass
class Act:
    """A 4-D NCHW activation of the graph being built."""

    name: str
    c: int
    h: int
    w: int


@dataclass
class GraphBuilder:
    """Builds one model: names, weights (sometimes shared, sometimes Constant nodes), nodes and the
    single ops the blocks of `graph_strategies` are made of; draws every choice from `draw`."""

    draw: st.DrawFn
    opset: int
    batch: int | str
    rng: np.random.Generator
    name_nodes: bool
    constant_nodes: bool = False
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    output_names: set[str] = field(default_factory=set)
    convs: dict[tuple, list[tuple[str, str | None]]] = field(default_factory=dict)
    params: dict[tuple, list[str]] = field(default_factory=dict)
    int_consts: dict[tuple, str] = field(default_factory=dict)
    count: int = 0

    # -- naming, weights, nodes -------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, shape: tuple[int, ...], *, fan_in: int = 1, positive: bool = False) -> str:
        """A random non-zero float32 initializer (|w| in [0.2, 1] / sqrt(fan_in), random sign)."""
        mag = self.rng.uniform(0.2, 1.0, size=shape)
        if positive:
            values = self.rng.uniform(0.5, 1.5, size=shape)
        else:
            values = mag * self.rng.choice([-1.0, 1.0], size=shape) / np.sqrt(max(fan_in, 1))
        return self.constant(np.asarray(values, dtype=np.float32), "w")

    def ints(self, values, prefix: str = "k") -> str:
        """An int64 constant; equal ones are sometimes one tensor (exporters deduplicate them)."""
        key = tuple(int(v) for v in np.asarray(values).reshape(-1)), np.asarray(values).ndim
        if key in self.int_consts and self.draw(st.booleans()):
            return self.int_consts[key]
        name = self.constant(np.asarray(values, dtype=np.int64), prefix)
        self.int_consts[key] = name
        return name

    def floats(self, values, prefix: str = "f") -> str:
        return self.constant(np.asarray(values, dtype=np.float32), prefix)

    def constant(self, array: np.ndarray, prefix: str) -> str:
        """An initializer, or (when the model uses them) sometimes a Constant node."""
        name = self.fresh(prefix)
        tensor = numpy_helper.from_array(array, name)
        if self.constant_nodes and self.draw(st.booleans()):
            node_name = self.fresh("const_") if self.name_nodes else None
            self.nodes.append(helper.make_node("Constant", [], [name], name=node_name, value=tensor))
        else:
            self.inits.append(tensor)
        return name

    def param(self, shape: tuple[int, ...], *, positive: bool = False, fan_in: int = 1) -> str:
        """A parameter, sometimes the same initializer as an earlier one of its shape.

        Exporters deduplicate equal constants (BatchNorm's ones and zeros), so one tensor can be
        read by layers in different parts of the graph, even by ops of different kinds (a conv
        bias and a BatchNorm scale, a [1, C, 1, 1] Mul constant and the weight of a C -> 1 conv).
        """
        key = (shape, positive)
        earlier = self.params.get(key)
        if earlier and self.draw(st.integers(0, 3)) == 0:
            return earlier[self.draw(st.integers(0, len(earlier) - 1))]
        name = self.weight(shape, positive=positive, fan_in=fan_in)
        self.params.setdefault(key, []).append(name)
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.fresh("t") for _ in range(n_out)]
        name = self.fresh(f"{op.lower()}_") if self.name_nodes else ""
        self.nodes.append(helper.make_node(op, inputs, outs, name=name or None, **attrs))
        return outs

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        return self.node(op, inputs, **attrs)[0]

    def output(self, name: str, shape: list[int | str | None]) -> None:
        if name not in self.output_names:
            self.output_names.add(name)
            self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def output_act(self, a: Act) -> None:
        self.output(a.name, [self.batch, a.c, a.h, a.w])

    def channels(self, low: int = 1, high: int = MAX_CHANNELS) -> int:
        return self.draw(st.integers(low, high))

    def batch_dim(self) -> int:
        """A Reshape target entry for the batch axis: copy (0), infer (-1), or the literal 1."""
        choices = [0, -1] if self.batch != 1 else [0, -1, 1]
        return self.draw(st.sampled_from(choices))

    # -- single ops ---------------------------------------------------------------------------

    def conv(
        self, x: Act, cout: int | None = None, *, kind: str | None = None, keep_space: bool = False
    ) -> Act:
        """A Conv of some kind; `cout` forces the output channels (plain or grouped kinds)."""
        kinds = ["plain", "depthwise", "grouped"]
        if cout is not None and cout != x.c:
            kinds = ["plain", "grouped"]
        kind = kind or self.draw(st.sampled_from(kinds))
        group = 1
        if kind == "depthwise":
            group = x.c
            mult = self.draw(st.sampled_from([1, 2])) if cout is None else cout // x.c
            cout = x.c * mult
        elif kind == "grouped":
            options = [g for g in (2, 4) if x.c % g == 0 and (cout is None or cout % g == 0)]
            if not options:
                kind = "plain"
            else:
                group = self.draw(st.sampled_from(options))
                if cout is None:
                    cout = group * self.draw(st.integers(1, max(1, MAX_CHANNELS // group)))
        if cout is None:
            cout = self.channels()
        shapes = ["1x1", "3x3pad"]
        if not keep_space:
            shapes += ["3x3same", "3x3stride2"] + (["3x3valid"] if min(x.h, x.w) >= 3 else [])
        shape = self.draw(st.sampled_from(shapes))
        k = 1 if shape == "1x1" else 3
        attrs: dict = {"kernel_shape": [k, k]}
        h, w = x.h, x.w
        if shape == "3x3pad":
            attrs["pads"] = [1, 1, 1, 1]
        elif shape == "3x3same":
            attrs["auto_pad"] = "SAME_UPPER"
        elif shape == "3x3stride2":
            attrs["pads"], attrs["strides"] = [1, 1, 1, 1], [2, 2]
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        elif shape == "3x3valid":
            h, w = h - 2, w - 2
        if group != 1:
            attrs["group"] = group
        wshape = (cout, x.c // group, k, k)
        key = (wshape,)
        reuse = self.convs.get(key)
        if reuse and self.draw(st.booleans()):
            wname, bname = reuse[self.draw(st.integers(0, len(reuse) - 1))]
        else:
            wname = self.param(wshape, fan_in=(x.c // group) * k * k)
            bname = self.param((cout,)) if self.draw(st.booleans()) else None
            self.convs.setdefault(key, []).append((wname, bname))
        inputs = [x.name, wname] + ([bname] if bname else [])
        return Act(self.op("Conv", inputs, **attrs), cout, h, w)

    def conv_transpose(self, x: Act) -> Act:
        """ConvTranspose: plain (k 2 stride 2, or k 3 pad 1), depthwise, or grouped."""
        kinds = ["plain", "depthwise"] + (["grouped"] if x.c % 2 == 0 else [])
        kind = self.draw(st.sampled_from(kinds))
        group = {"plain": 1, "depthwise": x.c, "grouped": 2}[kind]
        if kind == "depthwise":
            cout = x.c * self.draw(st.sampled_from([1, 2]))
        else:
            cout = group * self.draw(st.integers(1, MAX_CHANNELS // group))
        up = self.draw(st.booleans()) and max(x.h, x.w) <= 10
        k = 2 if up else 3
        attrs: dict = {"kernel_shape": [k, k], "strides": [2, 2]} if up else {"kernel_shape": [3, 3]}
        if not up:
            attrs["pads"] = [1, 1, 1, 1]
        if group != 1:
            attrs["group"] = group
        inputs = [x.name, self.param((x.c, cout // group, k, k), fan_in=x.c * k * k // group)]
        if self.draw(st.booleans()):
            inputs.append(self.weight((cout,)))
        scale = 2 if up else 1
        return Act(self.op("ConvTranspose", inputs, **attrs), cout, x.h * scale, x.w * scale)

    def misc(self, x: Act) -> Act:
        """Ops with a rule that are neither convs nor activations; some pin the channels."""
        kinds = [
            "Identity",
            "Dropout",
            "Softmax",
            "InstanceNormalization",
            "unsqueeze",
            "gather",
            "gather_space",
            "spatial_gate",
        ]
        if self.opset >= 17:
            kinds.append("LayerNormalization")
        kind = self.draw(st.sampled_from(kinds))
        if kind in ("Identity", "Dropout"):
            return Act(self.op(kind, [x.name]), x.c, x.h, x.w)
        if kind == "Softmax":
            return Act(self.op("Softmax", [x.name], axis=self.draw(st.sampled_from([1, -1]))), x.c, x.h, x.w)
        if kind == "InstanceNormalization":
            inputs = [x.name, self.param((x.c,)), self.param((x.c,))]
            return Act(self.op(kind, inputs, epsilon=1e-3), x.c, x.h, x.w)
        if kind == "LayerNormalization":
            inputs = [x.name, self.weight((x.w,)), self.weight((x.w,))]
            return Act(self.op(kind, inputs, axis=-1, epsilon=1e-3), x.c, x.h, x.w)
        if kind == "unsqueeze":
            axis = self.draw(st.sampled_from([0, 1, 2, 4, -1, -4]))
            five = self.op("Unsqueeze", [x.name, self.ints([axis])])
            five = self.op("Relu", [five])
            return Act(self.op("Squeeze", [five, self.ints([axis])]), x.c, x.h, x.w)
        if kind == "gather_space":
            rows = self.draw(st.lists(st.integers(0, x.h - 1), min_size=1, max_size=x.h))
            return Act(self.op("Gather", [x.name, self.ints(rows)], axis=2), x.c, len(rows), x.w)
        if kind == "gather":
            idx = self.draw(st.lists(st.integers(0, x.c - 1), min_size=1, max_size=x.c))
            return Act(self.op("Gather", [x.name, self.ints(idx)], axis=1), len(idx), x.h, x.w)
        # spatial attention (CBAM): a reduction over channels gates every channel
        if self.opset >= 18:
            pooled = self.op("ReduceMean", [x.name, self.ints([1])], keepdims=1)
        else:
            pooled = self.op("ReduceMean", [x.name], axes=[1], keepdims=1)
        gate = self.op("Sigmoid", [pooled])
        return Act(self.op("Mul", [x.name, gate]), x.c, x.h, x.w)

    def bn(self, x: Act) -> Act:
        params = [
            self.param((x.c,)),
            self.param((x.c,)),
            self.param((x.c,)),
            self.param((x.c,), positive=True),
        ]
        return Act(self.op("BatchNormalization", [x.name, *params], epsilon=1e-3), x.c, x.h, x.w)

    def act(self, x: Act) -> Act:
        kind = self.draw(st.sampled_from(["Relu", "Sigmoid", "HardSwish", "Clip", "LeakyRelu", "PRelu"]))
        if kind == "HardSwish" and self.opset < 14:
            kind = "HardSigmoid"
        if kind == "Clip":
            inputs = [x.name, self.floats(-0.5)]
            if self.draw(st.booleans()):
                inputs.append(self.floats(1.0))
            name = self.op("Clip", inputs)
        elif kind == "LeakyRelu":
            name = self.op("LeakyRelu", [x.name], alpha=0.1)
        elif kind == "PRelu":
            slope_shape = self.draw(st.sampled_from([(x.c, 1, 1), (1, x.c, 1, 1)]))
            name = self.op("PRelu", [x.name, self.param(slope_shape)])
        else:
            name = self.op(kind, [x.name])
        return Act(name, x.c, x.h, x.w)

    def const(self, x: Act) -> Act:
        """Mul, Add or Div by a per-channel (or scalar, or full C,H,W) constant."""
        op = self.draw(st.sampled_from(["Mul", "Add", "Div", "Sub", "Max", "Min"]))
        shape = self.draw(st.sampled_from([(x.c, 1, 1), (1, x.c, 1, 1), (1,), (x.c, x.h, x.w)]))
        c = self.param(shape)
        inputs = [c, x.name] if op != "Div" and self.draw(st.booleans()) else [x.name, c]
        return Act(self.op(op, inputs), x.c, x.h, x.w)

    def pool(self, x: Act) -> Act:
        kinds = ["max3", "avg3", "gap"] + (["max2"] if min(x.h, x.w) >= 2 else [])
        kind = self.draw(st.sampled_from(kinds))
        if kind == "gap":
            return Act(self.op("GlobalAveragePool", [x.name]), x.c, 1, 1)
        if kind == "max2":
            name = self.op("MaxPool", [x.name], kernel_shape=[2, 2], strides=[2, 2])
            return Act(name, x.c, x.h // 2, x.w // 2)
        op = "MaxPool" if kind == "max3" else "AveragePool"
        extra = {"count_include_pad": 0} if op == "AveragePool" else {}
        name = self.op(op, [x.name], kernel_shape=[3, 3], pads=[1, 1, 1, 1], **extra)
        return Act(name, x.c, x.h, x.w)

    def pad(self, x: Act) -> Act:
        on_channels = self.draw(st.integers(0, 3)) == 0
        pads = [0, int(on_channels), 1, 1, 0, 0, 1, 1]
        inputs = [x.name, self.ints(pads)]
        if self.opset >= 18 and self.draw(st.booleans()):
            inputs = [x.name, self.ints([1, 1, 1, 1]), "", self.ints([2, 3])]
            on_channels = False
        return Act(self.op("Pad", inputs), x.c + int(on_channels), x.h + 2, x.w + 2)

    def resize(self, x: Act) -> Act:
        if self.batch == 1 and self.draw(st.booleans()):
            sizes = self.ints([1, x.c, 2 * x.h, 2 * x.w])
            name = self.op("Resize", [x.name, "", "", sizes], mode="nearest")
        else:
            name = self.op("Resize", [x.name, "", self.floats([1.0, 1.0, 2.0, 2.0])], mode="nearest")
        return Act(name, x.c, 2 * x.h, 2 * x.w)
