"""Run the module once to see which layer feeds which, and build the example inputs for that.

An exporter folds a BatchNorm into the convolution before it, so the BatchNorm's parameters are
not in the ONNX model and the plan does not name them: they must lose the channels that the
convolution feeding them lost. Which convolution that is, only running the module shows:
forward hooks record which leaf module produced each tensor and which produced the first input of
each normalization layer.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
>>> run(net.eval(), (torch.zeros(1, 3, 2, 2),)).producers
{'1': '0'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from onnxprune.errors import UsageError

SYMBOLIC_DIM = 2  # size given to a dynamic dimension (batch, sequence) of the example inputs


@dataclass
class Trace:
    """`producers`: normalization module name -> the leaf module whose output it normalizes;
    `outputs`: the shapes of the module's outputs."""

    producers: dict[str, str]
    outputs: list[tuple[int, ...]]


def _norm_like(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._NormBase)


def _flatten(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _flatten(v)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [t for v in value for t in _flatten(v)]
    if hasattr(value, "to_tuple"):  # transformers ModelOutput
        return _flatten(value.to_tuple())
    return []


def call(module: nn.Module, inputs: Any) -> Any:
    """`module` applied to `inputs`: positional for a tuple or list, keywords for a dict."""
    with torch.no_grad():
        if isinstance(inputs, Mapping):
            return module(**inputs)
        if isinstance(inputs, tuple | list):
            return module(*inputs)
        return module(inputs)


def output_shapes(module: nn.Module, inputs: Any) -> list[tuple[int, ...]]:
    """The shapes of the module's outputs on `inputs`."""
    return [tuple(t.shape) for t in _flatten(call(module, inputs))]


def run(module: nn.Module, inputs: Any) -> Trace:
    """Run `module` on `inputs` with hooks on every leaf module; see `Trace`."""
    made_by: dict[int, str] = {}
    keep_alive: list[torch.Tensor] = []  # ids stay unique while the tensors live
    producers: dict[str, str] = {}
    handles = []

    def after(name: str):
        def hook(_module, _args, output):
            for t in _flatten(output):
                made_by.setdefault(id(t), name)
                keep_alive.append(t)

        return hook

    def before(name: str):
        def hook(_module, args):
            first = _flatten(args)[:1]
            if first and id(first[0]) in made_by:
                producers[name] = made_by[id(first[0])]

        return hook

    for name, sub in module.named_modules():
        if next(iter(sub.children()), None) is not None:
            continue
        handles.append(sub.register_forward_hook(after(name)))
        if _norm_like(sub):
            handles.append(sub.register_forward_pre_hook(before(name)))
    try:
        outputs = output_shapes(module, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return Trace(producers, outputs)


def example_inputs(model: onnx.ModelProto) -> tuple[torch.Tensor, ...]:
    """One tensor per graph input of `model`, in order: dynamic dimensions of size 2, float
    inputs random (fixed seed), integer inputs ones (valid token ids, masks and type ids)."""
    initializers = {t.name for t in model.graph.initializer}
    gen = torch.Generator().manual_seed(0)
    made = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else SYMBOLIC_DIM for d in ttype.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)
        if np.issubdtype(dtype, np.floating):
            made.append(torch.randn(shape, generator=gen).to(torch.from_numpy(np.zeros(0, dtype)).dtype))
        elif np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            made.append(torch.ones(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype))
        else:
            raise UsageError(f"graph input '{value.name}' has type {dtype}: pass example_inputs=")
    return tuple(made)
