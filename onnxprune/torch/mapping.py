"""Which PyTorch parameter or buffer each tensor of a plan is, and how their values relate.

A plan names the tensors of the exported ONNX model (docs/plan-format.md); the exporters name
and transform them differently (docs/torch-roundtrip.md):

- ``same``: the ONNX tensor is the parameter as it is (Conv and Gemm weights, biases, LayerNorm
  and BatchNorm vectors that were not folded, layer scales).
- ``transposed``: a 2-D ``[out, in]`` Linear weight stored as a MatMul's ``[in, out]`` right
  operand (dynamo ``val_N``, TorchScript ``onnx::MatMul_N``).
- ``scaled0`` / ``scaled1``: a convolution weight into which a BatchNorm was folded: each
  output channel (axis 0, or axis 1 for a transposed convolution) is the parameter's times a
  per-channel factor. Dynamo keeps the convolution's weight name, TorchScript renames it
  (``onnx::Conv_N``); the folded bias (``conv1.weight_bias``, ``onnx::Conv_N``) has no
  parameter of its own and is placed as ``folded-bias`` of its convolution (apply.py).

A tensor is first looked up by name (the module's own names, with or without an exporter prefix
such as ``p_`` or a wrapper's ``model.``), and the name is only trusted when the values agree;
otherwise it is matched by value among the parameters of a fitting shape.

>>> import numpy as np
>>> relation(np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3).T)
('transposed', None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SCALE_TOLERANCE = 1e-5  # relative, for the per-channel factor of a folded BatchNorm
VALUE_TOLERANCE = 1e-6  # relative, for tensors stored as they are


@dataclass(frozen=True)
class Placement:
    """ONNX tensor `onnx` is torch tensor `target` (a parameter or buffer name) under `how`;
    `by` says whether the name or only the values matched. `scale` holds the per-channel factor
    of a folded BatchNorm (``scaled0``/``scaled1``)."""

    onnx: str
    target: str
    how: str
    by: str
    scale: tuple[float, ...] | None = None

    def torch_axis(self, axis: int) -> int:
        """The torch tensor's axis that is axis `axis` of the ONNX tensor."""
        return 1 - axis if self.how == "transposed" else axis


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    if a.shape != b.shape:
        return False
    if np.array_equal(a, b):
        return True
    bound = tol * max(float(np.abs(b).max(initial=0.0)), 1e-12)
    return float(np.abs(a - b).max(initial=0.0)) <= bound


def _row_scale(onnx_value: np.ndarray, torch_value: np.ndarray, axis: int) -> np.ndarray | None:
    """The per-channel factor s with onnx = s * torch along `axis`, or None if there is none."""
    if onnx_value.shape != torch_value.shape or onnx_value.ndim < 2:
        return None
    if onnx_value.size // onnx_value.shape[axis] < 2:  # one entry per channel: any two would match
        return None
    a = np.moveaxis(onnx_value.astype(np.float64), axis, 0).reshape(onnx_value.shape[axis], -1)
    t = np.moveaxis(torch_value.astype(np.float64), axis, 0).reshape(onnx_value.shape[axis], -1)
    norms = (t * t).sum(axis=1)
    if np.any(norms == 0):
        return None
    scale = (a * t).sum(axis=1) / norms
    bound = SCALE_TOLERANCE * max(float(np.abs(a).max(initial=0.0)), 1e-12)
    if float(np.abs(a - scale[:, None] * t).max(initial=0.0)) > bound:
        return None
    return scale


def relation(onnx_value: np.ndarray, torch_value: np.ndarray) -> tuple[str, tuple[float, ...] | None] | None:
    """How `onnx_value` derives from `torch_value`: ``(how, scale)``, or None when it does not."""
    if _close(onnx_value, torch_value, VALUE_TOLERANCE):
        return "same", None
    if torch_value.ndim == 2 and _close(onnx_value, torch_value.T, VALUE_TOLERANCE):
        return "transposed", None
    for axis, how in ((0, "scaled0"), (1, "scaled1")):
        scale = _row_scale(onnx_value, torch_value, axis)
        if scale is not None:
            return how, tuple(float(s) for s in scale)
    return None


def _key(name: str) -> str:
    """A name with exporter decorations removed: ``p_``/``b_`` prefixes, dots as underscores."""
    for prefix in ("p_", "b_", "c_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.replace(".", "_")


def name_candidates(onnx_name: str, torch_names: list[str]) -> list[str]:
    """Torch names that `onnx_name` may be: equal, or equal once a wrapper prefix is removed.

    >>> name_candidates("model.h.0.attn.c_attn.weight", ["h.0.attn.c_attn.weight", "h.0.ln_1.weight"])
    ['h.0.attn.c_attn.weight']
    """
    key = _key(onnx_name)
    exact = [n for n in torch_names if _key(n) == key]
    if exact:
        return exact
    return [n for n in torch_names if key.endswith("_" + _key(n)) or _key(n).endswith("_" + key)]


class TensorIndex:
    """The module's float tensors by name and by shape, for finding a plan tensor's counterpart."""

    def __init__(self, tensors: Mapping[str, np.ndarray]) -> None:
        self.tensors = dict(tensors)
        self.names = list(self.tensors)
        self.by_shape: dict[tuple[int, ...], list[str]] = {}
        for name, value in self.tensors.items():
            self.by_shape.setdefault(tuple(value.shape), []).append(name)

    def place(self, onnx_name: str, value: np.ndarray) -> list[Placement]:
        """Every torch tensor `value` can be; by name when a named candidate's values agree."""
        for name in name_candidates(onnx_name, self.names):
            rel = relation(value, self.tensors[name])
            if rel is not None:
                return [Placement(onnx_name, name, rel[0], "name", rel[1])]
        shapes = {tuple(value.shape)}
        if value.ndim == 2:
            shapes.add(tuple(value.shape[::-1]))
        found = []
        for shape in shapes:
            for name in self.by_shape.get(shape, ()):
                rel = relation(value, self.tensors[name])
                if rel is not None:
                    found.append(Placement(onnx_name, name, rel[0], "value", rel[1]))
        return found
