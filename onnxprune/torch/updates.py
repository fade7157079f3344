"""The new values of the tensors compensation changed, as the module's parameters hold them.

A plan's `updates` (docs/plan-format.md) list tensors whose values the pruned ONNX model holds:
they are read from it and written back through the placement's relation. A transposed MatMul
weight is transposed back; a convolution weight with a folded BatchNorm is divided by the
BatchNorm's per-channel factor; a change to a folded bias is a change to the BatchNorm's bias
(the fold is ``beta + (b - mean) * s``, linear in ``beta``); a bias that compensation added to a
layer without one becomes that layer's ``bias`` parameter.
"""

from __future__ import annotations

import numpy as np
import onnx
from torch import nn

from onnxprune.errors import PlanError, UsageError
from onnxprune.plan import Plan
from onnxprune.torch.placing import Keeps, Placed, out_axis
from onnxprune.weights import weight_tensors

NewValues = dict[str, np.ndarray]  # torch tensor name -> values after slicing
NewBiases = dict[str, np.ndarray]  # module name -> a bias to create


def _reader(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.input), None)


def _layer_of_new_bias(pruned: onnx.ModelProto, tensor: str, placed: Placed) -> str | None:
    """The module a bias tensor added by compensation belongs to: the Conv/Gemm that reads it,
    or the MatMul whose output the inserted Add reads."""
    node = _reader(pruned, tensor)
    if node is None:
        return None
    if node.op_type == "Add":
        other = next((i for i in node.input if i != tensor), None)
        node = next((n for n in pruned.graph.node if other in n.output), None)
        if node is None or node.op_type != "MatMul":
            return None
    weight = placed.placements.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None or not weight.target.endswith(".weight"):
        return None
    return weight.target[: -len(".weight")]


def _sliced(values: np.ndarray, keeps: dict[int, tuple[int, ...]]) -> np.ndarray:
    for axis, keep in keeps.items():
        values = np.take(values, keep, axis=axis)
    return values


def update_values(
    plan: Plan,
    placed: Placed,
    keeps: Keeps,
    state: dict[str, np.ndarray],
    module: nn.Module,
    producers: dict[str, str],
    pruned: onnx.ModelProto | None,
    original: dict[str, np.ndarray],
) -> tuple[NewValues, NewBiases]:
    """New values per torch tensor, and biases to create, for every entry of `plan.updates`."""
    if not plan.updates:
        return {}, {}
    if pruned is None:
        raise UsageError("the plan lists updates (compensation): pass pruned= (the pruned ONNX model)")
    stored = weight_tensors(pruned)
    values: NewValues = {}
    biases: NewBiases = {}
    for u in plan.updates:
        if u.tensor not in stored:
            raise PlanError(f"update '{u.tensor}' is not a weight of the pruned model")
        new = onnx.numpy_helper.to_array(stored[u.tensor])
        p = placed.placements.get(u.tensor)
        if p is None:
            layer = _layer_of_new_bias(pruned, u.tensor, placed)
            if layer is None or u.tensor in original:
                raise PlanError(f"update '{u.tensor}': no layer of the module to hold it")
            biases[layer] = new.reshape(-1)
        elif p.how == "same":
            values[p.target] = new
        elif p.how == "transposed":
            values[p.target] = new.T
        elif p.how in ("scaled0", "scaled1"):
            axis = int(p.how[-1])
            scale = np.asarray(p.scale)[list(keeps.get(p.target, {}).get(axis, range(len(p.scale))))]
            shape = [1] * new.ndim
            shape[axis] = -1
            values[p.target] = new / scale.reshape(shape)
        else:  # folded-bias: the change goes to the folded BatchNorm's bias
            delta = new.reshape(-1) - _sliced(original[u.tensor], _bias_keep(p.target, module, keeps))
            target = _folded_norm(p.target, producers) or p.target
            name = f"{target}.bias"
            if name not in state:
                raise PlanError(f"update '{u.tensor}': '{p.target}' has no BatchNorm or bias to hold it")
            base = values.get(name, _sliced(state[name], keeps.get(name, {})))
            values[name] = base + delta
    return values, biases


def _bias_keep(layer: str, module: nn.Module, keeps: Keeps) -> dict[int, tuple[int, ...]]:
    axis = out_axis(module.get_submodule(layer))
    keep = keeps.get(f"{layer}.weight", {}).get(axis)
    return {0: keep} if keep is not None else {}


def _folded_norm(layer: str, producers: dict[str, str]) -> str | None:
    return next((norm for norm, src in producers.items() if src == layer), None)
