"""Place every tensor of a plan on the module, and work out each torch tensor's kept indices.

`place_plan` maps each tensor the plan slices or updates to a parameter or buffer (mapping.py),
or, for the bias a BatchNorm fold left on a convolution, to that convolution. `torch_keeps` turns
the plan's slices into kept indices per (torch tensor, axis) and extends them to what the ONNX
model does not show: a layer's bias follows its weight's output channels, and a BatchNorm folded
away by the exporter follows the layer that feeds it (trace.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from torch import nn

from onnxprune.errors import PlanError
from onnxprune.plan import Plan
from onnxprune.torch.mapping import Placement, TensorIndex

BIAS_OPS = ("Conv", "ConvTranspose", "Gemm")

Keeps = dict[str, dict[int, tuple[int, ...]]]  # torch tensor name -> axis -> kept indices


@dataclass(frozen=True)
class Placed:
    """The placements of a plan's tensors (by ONNX name) and the tensors no rule could place."""

    placements: dict[str, Placement]
    unplaced: dict[str, str]  # ONNX name -> why


def _weight_of(model: onnx.ModelProto, tensor: str) -> str | None:
    """The weight input of the Conv/ConvTranspose/Gemm node that reads `tensor` as its bias."""
    for node in model.graph.node:
        if node.op_type in BIAS_OPS and len(node.input) > 2 and node.input[2] == tensor:
            return node.input[1]
    return None


def place_plan(
    plan: Plan, model: onnx.ModelProto, weights: dict[str, np.ndarray], index: TensorIndex
) -> Placed:
    """Place every tensor of the input model that `plan` slices or updates."""
    names = list(dict.fromkeys([s.tensor for s in plan.slices] + [u.tensor for u in plan.updates]))
    placements: dict[str, Placement] = {}
    unplaced: dict[str, str] = {}
    pending = []
    for name in names:
        if name not in weights:
            if name not in {s.tensor for s in plan.slices}:
                continue  # a tensor compensation added: placed from the pruned model (apply.py)
            unplaced[name] = "not a weight of the ONNX model"
            continue
        found = index.place(name, weights[name])
        targets = {p.target for p in found}
        if len(targets) == 1:
            placements[name] = found[0]
        else:  # none, or several (all-zero biases of an untrained model): try the graph
            pending.append((name, sorted(targets)))
    for name, candidates in pending:
        weight = _weight_of(model, name)
        if weight is not None and weight not in placements and weight in weights:
            found = index.place(weight, weights[weight])
            if len({p.target for p in found}) == 1:
                placements[weight] = found[0]
        owner = placements.get(weight) if weight else None
        if owner is not None and owner.target.endswith(".weight"):
            module = owner.target[: -len(".weight")]
            placements[name] = Placement(name, module, "folded-bias", "graph")
        elif candidates:
            unplaced[name] = f"ambiguous: its values match {candidates}"
        else:
            unplaced[name] = "no parameter or buffer of the module has its values"
    return Placed(placements, unplaced)


def _put(keeps: Keeps, target: str, axis: int, keep: tuple[int, ...], source: str) -> None:
    have = keeps.setdefault(target, {}).get(axis)
    if have is not None and have != keep:
        raise PlanError(f"'{target}' axis {axis}: {source} keeps other channels than the plan's other slices")
    keeps[target][axis] = keep


def out_axis(module: nn.Module) -> int:
    """The axis of `module.weight` that holds its output channels."""
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        return 1
    return 1 if type(module).__name__ == "Conv1D" else 0


def torch_keeps(
    plan: Plan, placed: Placed, module: nn.Module, producers: dict[str, str], shapes: dict[str, tuple]
) -> Keeps:
    """Kept indices per torch tensor and axis (see the module docstring)."""
    keeps: Keeps = {}
    for s in plan.slices:
        p = placed.placements[s.tensor]
        if p.how == "folded-bias":
            _put(keeps, f"{p.target}.weight", out_axis(module.get_submodule(p.target)), s.keep, s.tensor)
            continue
        axis = p.torch_axis(s.axis)
        if shapes[p.target][axis] != s.size:
            have = shapes[p.target]
            raise PlanError(f"'{s.tensor}' axis {s.axis} has {s.size} channels, '{p.target}' {have}")
        _put(keeps, p.target, axis, s.keep, s.tensor)
    layer_out: dict[str, tuple[int, ...]] = {}
    for name, sub in module.named_modules():
        weight = keeps.get(f"{name}.weight" if name else "weight", {})
        if isinstance(getattr(sub, "weight", None), nn.Parameter) and out_axis(sub) in weight:
            layer_out[name] = weight[out_axis(sub)]
            if getattr(sub, "bias", None) is not None and not isinstance(sub, nn.modules.batchnorm._NormBase):
                _put(keeps, _join(name, "bias"), 0, layer_out[name], _join(name, "weight"))
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._NormBase):
            _norm_keeps(name, sub, keeps, layer_out.get(producers.get(name, "")))
    return keeps


def _join(prefix: str, attr: str) -> str:
    return f"{prefix}.{attr}" if prefix else attr


def _norm_keeps(name: str, norm: nn.Module, keeps: Keeps, from_producer: tuple[int, ...] | None) -> None:
    """A normalization layer's vectors all keep the same channels: its own placed ones, or else
    those of the layer feeding it (a BatchNorm the exporter folded)."""
    vectors = ("weight", "bias", "running_mean", "running_var")
    attrs = [a for a in vectors if getattr(norm, a, None) is not None]
    own = [keeps[_join(name, a)][0] for a in attrs if 0 in keeps.get(_join(name, a), {})]
    keep = own[0] if own else from_producer
    if keep is None:
        return
    for a in attrs:
        _put(keeps, _join(name, a), 0, keep, f"normalization '{name}'")
