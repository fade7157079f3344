"""What "masking a removed channel" means on a quantized path (docs/quantization.md).

In a float model a removed input channel is masked by zeroing its weight entries. Two things
differ once weights or activations are stored as integers:

* A quantized weight read with a zero point `zp` contributes nothing where it equals `zp`
  ((q - zp) * scale = 0), not where it is 0: `mask_fill` gives the value each removed entry
  takes (the zero point, broadcast along its axis), 0 where no zero point applies.
* `DynamicQuantizeLinear` picks its scale from min(0, x.min()) .. max(0, x.max()) of the whole
  tensor. The pruned model quantizes only the kept channels; the masked original quantizes
  all of them, so its scale differs unless the removed channels are zeroed at its input (the
  range always contains 0, so zeroed channels leave it as the kept ones make it).
  `mask_dynamic_quantization` inserts that zeroing (a Mul by a 0/1 vector) before each
  DynamicQuantizeLinear whose quantized output a pruned ConvInteger / MatMulInteger reads.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 19]>
... g (float[1, 2] x) => (float[1, 2] y) <uint8[2, 2] q = {1, 2, 3, 4}, float s = {0.5},
... uint8 z = {3}> { w = DequantizeLinear(q, s, z)  y = MatMul(x, w) }''')
>>> mask_fill(m, "q", (2, 2)).tolist()
[[3, 3], [3, 3]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.graph import QUANTIZATION_DOMAINS, ZERO_POINT_OF, fresh_name, graph_defines, is_default_domain
from onnxprune.plan import TensorSlice
from onnxprune.weights import get_weight, weight_tensors

QUANTIZED_STEPS = 1
"""How many quantization steps an output of an integer path may differ by in parity: the integer
arithmetic of the kept channels is the same in both models, but float ops between quantization
points may sum in another order and round one value to the neighbouring step."""

_QUANTIZED_ACTIVATION_READERS = {"ConvInteger": 1, "MatMulInteger": 1}
"""Integer products whose input 0 may be a DynamicQuantizeLinear output, and their weight input."""


def mask_fill(model: onnx.ModelProto, tensor: str, shape: Sequence[int]) -> np.ndarray | int:
    """The value each entry of weight `tensor` (of `shape`) takes where masking removes it: the
    zero point its quantization op reads it with, broadcast to `shape`; 0 for a float weight or
    a quantized one without a zero point."""
    for node in model.graph.node:
        if node.domain not in QUANTIZATION_DOMAINS or node.op_type not in ZERO_POINT_OF:
            continue
        for value_index, zp_index in ZERO_POINT_OF[node.op_type].items():
            if value_index >= len(node.input) or node.input[value_index] != tensor:
                continue
            if zp_index >= len(node.input) or not node.input[zp_index]:
                return 0
            zp = np.asarray(get_weight(model, node.input[zp_index]))
            if zp.size == 1:
                return np.full(tuple(shape), zp.reshape(-1)[0], dtype=zp.dtype)
            axis = _zero_point_axis(node, value_index, len(shape))
            view = [1] * len(shape)
            view[axis] = zp.size
            return np.broadcast_to(zp.reshape(view), tuple(shape))
    return 0


def _zero_point_axis(node: onnx.NodeProto, value_index: int, rank: int) -> int:
    """The axis a 1-D zero point of `node` runs along, on its quantized input `value_index`."""
    if node.op_type == "DequantizeLinear":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return axis + rank if axis < 0 else axis
    if node.op_type in ("ConvInteger", "QLinearConv"):
        return 0  # per output channel
    if node.op_type == "QGemm":  # per output unit N of B: [N, K] with transB, else [K, N]
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else rank - 1
    return rank - 1  # MatMulInteger / QLinearMatMul: per column of B


def mask_dynamic_quantization(model: onnx.ModelProto, slices: Sequence[TensorSlice]) -> None:
    """Zero, in place, the removed channels at the input of each DynamicQuantizeLinear whose
    quantized output an integer product reads with a sliced reduction axis (module docstring)."""
    removed = _removed_inputs(model, slices)
    graph = model.graph
    taken = graph_defines(graph)
    for position in range(len(graph.node) - 1, -1, -1):
        node = graph.node[position]
        if node.op_type != "DynamicQuantizeLinear" or not is_default_domain(node.domain):
            continue
        masks = [removed[r.output[0]] for r in graph.node if r.input and r.input[0] == node.output[0]]
        masks = [m for m in masks if m is not None]
        if not masks:
            continue
        channels, axis, size, rank = masks[0]
        keep = np.ones(size, np.float32)
        keep[channels] = 0
        view = [1] * rank
        view[axis] = size
        mask = fresh_name(f"{node.input[0]}__onnxprune_mask", taken)
        masked = fresh_name(f"{node.input[0]}__onnxprune_masked", taken)
        taken |= {mask, masked}
        graph.initializer.append(numpy_helper.from_array(keep.reshape(view[axis:]), mask))
        graph.node.insert(position, onnx.helper.make_node("Mul", [node.input[0], mask], [masked]))
        node.input[0] = masked


def _removed_inputs(model: onnx.ModelProto, slices: Sequence[TensorSlice]) -> dict:
    """For each integer product's output: (removed input channels, channel axis of its
    activation, channel count, activation rank), or None when it removes none."""
    by_tensor = {(s.tensor, s.axis): s for s in slices if len(s.keep) < s.size}
    weights = weight_tensors(model)
    found: dict[str, tuple | None] = {}
    for node in model.graph.node:
        if node.op_type not in _QUANTIZED_ACTIVATION_READERS or not is_default_domain(node.domain):
            continue
        w = node.input[_QUANTIZED_ACTIVATION_READERS[node.op_type]]
        found[node.output[0]] = None
        if w not in weights:
            continue
        rank = len(weights[w].dims)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "ConvInteger" and group == 1:
            axis_w, axis_x, x_rank = 1, 1, rank
        elif node.op_type == "ConvInteger" and weights[w].dims[1] == 1 and weights[w].dims[0] == group:
            axis_w, axis_x, x_rank = 0, 1, rank  # depthwise: input channel c makes output c
        elif node.op_type == "MatMulInteger":
            axis_w, axis_x, x_rank = rank - 2, -1, 1
        else:
            continue
        s = by_tensor.get((w, axis_w)) or by_tensor.get((w, axis_w - rank))
        if s is not None:
            gone = np.setdiff1d(np.arange(s.size), np.asarray(s.keep, np.int64))
            found[node.output[0]] = (gone, axis_x if axis_x >= 0 else 0, s.size, x_rank)
    return found


RANGE_STEP = 1 / 255
"""One 8-bit quantization step of a tensor's range: the step of a float output computed from
integer paths whose scales are chosen at run time (DynamicQuantizeLinear)."""

_INTEGER_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"})


def output_steps(model: onnx.ModelProto) -> dict[str, tuple[float, float]]:
    """The quantization step of each graph output of a quantized graph, as (absolute, relative
    to the output's largest magnitude): the (largest) scale of the DequantizeLinear that
    produces it; 1 for an integer output of a quantizing op; `RANGE_STEP` of its range for any
    other output of a graph that quantizes activations dynamically (a value one step apart in a
    run-time quantized activation moves it by about that much). Outputs of graphs without
    dynamic quantization made by float ops are absent: they are compared at float tolerance."""
    makers = {o: n for n in model.graph.node for o in n.output}
    dynamic = any(n.op_type == "DynamicQuantizeLinear" for n in model.graph.node)
    steps: dict[str, tuple[float, float]] = {}
    for out in model.graph.output:
        node = makers.get(out.name)
        if node is None:
            continue
        if node.op_type == "DequantizeLinear" and is_default_domain(node.domain):
            scale = _constant(model, node.input[1])
            if scale is not None and scale.size:
                steps[out.name] = (float(np.abs(scale).max()), 0.0)
        elif node.op_type in _INTEGER_OPS and is_default_domain(node.domain):
            steps[out.name] = (1.0, 0.0)
        elif dynamic:
            steps[out.name] = (0.0, RANGE_STEP)
    return steps


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    try:
        return np.asarray(get_weight(model, name), dtype=np.float64)
    except KeyError:
        return None
