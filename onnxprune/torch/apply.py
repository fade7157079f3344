"""`apply_plan`: give a PyTorch module the architecture onnxprune chose for its ONNX export.

Steps: run the module once (trace.py) to see its outputs and which layer feeds each BatchNorm;
place every plan tensor on a parameter or buffer (mapping.py, placing.py); refuse, naming them,
if any cannot be placed; compute every new tensor (sliced, and for the plan's `updates` the
values read from the pruned ONNX model, updates.py); then swap them in, set the layers' size
attributes and head counts (layers.py), and run the module again. If that run fails or an output
changed shape, every change is undone and the error says so: nothing is half-applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from onnxprune.errors import ModelError, PlanError, UsageError
from onnxprune.io import load_model
from onnxprune.plan import Plan
from onnxprune.torch import layers, trace
from onnxprune.torch.mapping import Placement, TensorIndex
from onnxprune.torch.placing import place_plan, torch_keeps
from onnxprune.torch.updates import update_values
from onnxprune.weights import weight_tensors

ModelLike = str | os.PathLike | bytes | onnx.ModelProto


@dataclass
class AppliedPlan:
    """What `apply_plan` did: how each plan tensor was placed (ONNX name -> `Placement`), the new
    shape of every torch tensor it replaced, the torch tensors given new values (`updates`),
    the modules whose attributes changed, and the head counts of attention modules."""

    placements: dict[str, Placement]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    updated: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    heads: dict[str, dict[str, int]] = field(default_factory=dict)


def _holders(module: nn.Module) -> dict[str, list[tuple[nn.Module, str, str]]]:
    """Canonical tensor name -> every (module, attribute, kind) holding that tensor (tied ones)."""
    first: dict[int, str] = {}
    held: dict[str, list[tuple[nn.Module, str, str]]] = {}
    params = module.named_parameters(remove_duplicate=False)
    buffers = module.named_buffers(remove_duplicate=False)
    for kind, items in (("param", params), ("buffer", buffers)):
        for name, t in items:
            canonical = first.setdefault(id(t), name)
            owner, _, attr = name.rpartition(".")
            held.setdefault(canonical, []).append((module.get_submodule(owner), attr, kind))
    return held


def _state(module: nn.Module, held: dict) -> dict[str, np.ndarray]:
    state = {}
    for name, places in held.items():
        owner, attr, _ = places[0]
        t = getattr(owner, attr)
        if t is not None and t.dtype.is_floating_point:
            state[name] = t.detach().cpu().numpy()
    return state


def _group_rewrites(plan: Plan, model: onnx.ModelProto, placements: dict, module: nn.Module) -> dict:
    """id(conv module) -> new `groups`, from the plan's "group" rewrites."""
    nodes = {n.name: n for n in model.graph.node}
    out = {}
    for r in plan.rewrites:
        node = nodes.get(r.node)
        if r.what != "group" or node is None or len(node.input) < 2 or node.input[1] not in placements:
            continue
        target = placements[node.input[1]].target
        if target.endswith(".weight"):
            out[id(module.get_submodule(target[: -len(".weight")]))] = int(r.after)
    return out


def _swap(held, keeps, values, biases, module, journal: layers.Journal, result: AppliedPlan) -> None:
    for name in sorted(set(keeps) | set(values)):
        owner, attr, kind = held[name][0]
        old = getattr(owner, attr)
        new = old.detach()
        for axis, keep in keeps.get(name, {}).items():
            new = new.index_select(axis, torch.tensor(keep, dtype=torch.long, device=new.device))
        if name in values:
            fresh = torch.as_tensor(np.array(values[name], copy=True), dtype=old.dtype, device=old.device)
            if tuple(fresh.shape) != tuple(new.shape):
                shape = tuple(fresh.shape)
                raise PlanError(f"update for '{name}' has shape {shape}, expected {tuple(new.shape)}")
            new = fresh
            result.updated.append(name)
        new = nn.Parameter(new.clone(), requires_grad=old.requires_grad) if kind == "param" else new.clone()
        for holder, hattr, hkind in held[name]:
            journal.set(holder, hattr, new, hkind)
        result.shapes[name] = tuple(new.shape)
    for layer, bias in biases.items():
        sub = module.get_submodule(layer)
        ref = sub.weight
        fresh = torch.as_tensor(np.array(bias, copy=True), dtype=ref.dtype, device=ref.device)
        journal.set(sub, "bias", nn.Parameter(fresh), "param")
        result.updated.append(f"{layer}.bias")


def apply_plan(
    module: nn.Module,
    plan: Plan | str | os.PathLike,
    original: ModelLike,
    *,
    pruned: ModelLike | None = None,
    example_inputs: Any = None,
) -> AppliedPlan:
    """Slice `module` in place as `plan` sliced its ONNX export `original`.

    `original` is the ONNX model the plan was made from (exported from this module, same weights);
    `pruned` the pruned ONNX model, needed when the plan has `updates` (compensation): their new
    values are read from it. `example_inputs` (a tuple, a dict of keywords or a tensor) drive one
    forward pass; by default they are made from `original`'s graph inputs. Raises `PlanError`
    naming the tensors it cannot place, leaving the module untouched.

    >>> result = apply_plan(net, "plan.json", "net.onnx", pruned="net_pruned.onnx")  # doctest: +SKIP
    >>> torch.onnx.export(net, (x,), "again.onnx", dynamo=True)  # doctest: +SKIP
    """
    plan = plan if isinstance(plan, Plan) else Plan.load(plan)
    model, _ = load_model(original)
    pruned_model = load_model(pruned)[0] if pruned is not None else None
    weights = {n: onnx.numpy_helper.to_array(t) for n, t in weight_tensors(model).items()}
    inputs = example_inputs if example_inputs is not None else trace.example_inputs(model)
    try:
        before = trace.run(module, inputs)
    except Exception as exc:  # the user's module: any failure means the inputs do not fit it
        why = f"the module does not run on the example inputs ({exc}); pass example_inputs="
        raise UsageError(why) from exc
    held = _holders(module)
    state = _state(module, held)
    placed = place_plan(plan, model, weights, TensorIndex(state))
    if placed.unplaced:
        listed = "; ".join(f"'{n}': {why}" for n, why in placed.unplaced.items())
        raise PlanError(f"cannot place {len(placed.unplaced)} plan tensor(s) on the module: {listed}")
    shapes = {n: v.shape for n, v in state.items()}
    keeps = torch_keeps(plan, placed, module, before.producers, shapes)
    producers = before.producers
    values, biases = update_values(plan, placed, keeps, state, module, producers, pruned_model, weights)
    result = AppliedPlan(dict(placed.placements))
    journal = layers.Journal()
    try:
        _swap(held, keeps, values, biases, module, journal, result)
        _refresh(module, plan, model, placed.placements, journal, result)
        after = trace.output_shapes(module, inputs)
        if after != before.outputs:
            raise ModelError(f"the sliced module's outputs have shapes {after}, before {before.outputs}")
    except Exception as exc:
        journal.rollback()
        if isinstance(exc, PlanError | ModelError):
            raise
        raise ModelError(f"the sliced module does not run ({exc}); nothing was changed") from exc
    return result


def _refresh(module, plan, model, placements, journal, result: AppliedPlan) -> None:
    groups = _group_rewrites(plan, model, placements, module)
    linear_in = {id(m): m.in_features for m in module.modules() if isinstance(m, nn.Linear)}
    for name, sub in module.named_modules():
        if layers.refresh_layer(sub, groups, journal):
            result.modules.append(name)
    for name, sub in module.named_modules():
        if layers.refresh_feature_sizes(sub, linear_in, journal):
            result.modules.append(name)
    for name, sub in module.named_modules():
        counts = layers.refresh_heads(name, sub, journal)
        if counts is not None:
            result.heads[name] = counts
    layers.refresh_config(module, result.heads, journal)
