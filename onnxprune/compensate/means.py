"""Data-free channel means, from the parameters of the layer that produced the channels.

Without samples, the mean of a channel is known where its producer normalises it:

- ``BatchNormalization``: its output channel c has mean β_c (the BN shift) on data that matches
  the statistics the BN was trained with (the usual assumption of data-free methods).
- ``Relu`` of such a BN output: the channel is modelled as N(β, γ²) and the mean of the rectified
  Gaussian is σ·φ(β/σ) + β·Φ(β/σ) with σ = |γ| (max(β, 0) when γ = 0).
- ``Clip`` to [0, b] (ReLU6) of such a BN output: E[min(max(X, 0), b)], the rectified mean of
  X minus that of X − b.
- ``Concat`` along the channel axis, ``Identity`` and ``Dropout`` pass the means of their inputs
  through.

Any other producer gives an unknown mean (NaN), and a consumer whose removed channels have an
unknown mean is not compensated without data (the report says so).
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxprune.graph import is_default_domain, producers
from onnxprune.weights import get_weight

PASS_THROUGH = ("Identity", "Dropout")


def rectified_gaussian_mean(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """E[max(X, 0)] for X ~ N(mu, sigma²), elementwise; max(mu, 0) where sigma is 0.

    >>> [round(v, 4) for v in rectified_gaussian_mean(np.array([0.0, 3.0]), np.array([1.0, 0.0]))]
    [0.3989, 3.0]
    """
    mu = np.asarray(mu, np.float64)
    sigma = np.abs(np.asarray(sigma, np.float64))
    safe = np.where(sigma > 0, sigma, 1.0)
    z = mu / safe
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    return np.where(sigma > 0, sigma * pdf + mu * cdf, np.maximum(mu, 0.0))


def _batchnorm(node: onnx.NodeProto, model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(γ, β) of a BatchNormalization node with constant parameters, else None."""
    if node.op_type != "BatchNormalization" or not is_default_domain(node.domain):
        return None
    try:
        return get_weight(model, node.input[1]).reshape(-1), get_weight(model, node.input[2]).reshape(-1)
    except KeyError:
        return None


def channel_means(model: onnx.ModelProto, tensor: str, channels: int, depth: int = 0) -> np.ndarray:
    """Data-free per-channel means of `tensor` (channel axis 1) in `model`; NaN where unknown."""
    unknown = np.full(channels, np.nan)
    made_by = producers(model.graph.node)
    node = made_by.get(tensor)
    if node is None or depth > 32 or not is_default_domain(node.domain):
        return unknown
    bn = _batchnorm(node, model)
    if bn is not None and node.output[0] == tensor and bn[1].size == channels:
        return bn[1].astype(np.float64)
    if node.op_type in ("Relu", "Clip"):
        source = made_by.get(node.input[0])
        bn = _batchnorm(source, model) if source is not None else None
        bounds = (0.0, np.inf) if node.op_type == "Relu" else _clip_bounds(node, model)
        if bn is None or bn[1].size != channels or bounds is None or bounds[0] != 0.0:
            return unknown
        mean = rectified_gaussian_mean(bn[1], bn[0])
        if np.isfinite(bounds[1]):
            mean = mean - rectified_gaussian_mean(bn[1] - bounds[1], bn[0])
        return mean
    if node.op_type in PASS_THROUGH and node.output[0] == tensor:
        return channel_means(model, node.input[0], channels, depth + 1)
    if node.op_type == "Concat":
        return _concat_means(model, node, channels, depth)
    return unknown


def _clip_bounds(node: onnx.NodeProto, model: onnx.ModelProto) -> tuple[float, float] | None:
    """(min, max) of a Clip with constant bounds (inputs, or attributes before opset 11)."""
    attrs = {a.name: a.f for a in node.attribute}
    low, high = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    try:
        if len(node.input) > 1 and node.input[1]:
            low = float(get_weight(model, node.input[1]))
        if len(node.input) > 2 and node.input[2]:
            high = float(get_weight(model, node.input[2]))
    except (KeyError, TypeError, ValueError):
        return None
    return float(low), float(high)


def _concat_means(model: onnx.ModelProto, node: onnx.NodeProto, channels: int, depth: int) -> np.ndarray:
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    sizes = _channel_sizes(model, list(node.input))
    if axis != 1 or sizes is None or sum(sizes) != channels:
        return np.full(channels, np.nan)
    parts = [
        channel_means(model, name, size, depth + 1) for name, size in zip(node.input, sizes, strict=True)
    ]
    return np.concatenate(parts)


def _channel_sizes(model: onnx.ModelProto, names: list[str]) -> list[int] | None:
    """Dim 1 of each tensor, from value_info / graph inputs / initializers; None if one is unknown."""
    known: dict[str, int] = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].HasField("dim_value"):
            known[info.name] = dims[1].dim_value
    sizes = [known.get(n) for n in names]
    return None if any(s is None for s in sizes) else sizes  # type: ignore[return-value]
