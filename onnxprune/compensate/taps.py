"""How often each kernel tap of a Conv reads inside its input rather than its padding.

A constant shift m of an input channel moves a Conv's output at position p by Σ_t W[o, c, t]·m
over the taps t that read inside the input at p: in the interior every tap does, near the
borders the padded taps read zeros instead. A bias cannot vary with position; the constant that
best matches the shift over all output positions (least squares) is Σ_t W[o, c, t]·cov[t]·m,
with cov[t] the fraction of output positions at which tap t reads inside the input. That is what
compensation folds into a Conv's bias, so a deep layer whose kernel is as long as its input (most
taps in padding) is not given a bias as if every tap saw the mean. With padding the fold is exact
on average over positions (the output's per-channel mean), not position by position: the
interior gets a slightly smaller shift than it needs, the borders a larger one. With no padding
(or 1x1 kernels) every cov[t] is 1 and a constant channel is folded exactly everywhere.

>>> coverage({"pads": [1, 1]}, (3,), (4,)).round(3).tolist()
[0.75, 1.0, 0.75]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _pads(attrs: Mapping, kernel: Sequence[int], spatial: Sequence[int]) -> list[tuple[int, int]]:
    rank = len(kernel)
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for length, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-length // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * rank
    flat = list(attrs.get("pads", [0] * (2 * rank)))
    return list(zip(flat[:rank], flat[rank:], strict=True))


def coverage(attrs: Mapping, kernel: Sequence[int], spatial: Sequence[int] | None) -> np.ndarray:
    """cov[t] for every tap of the kernel, flattened in the weight's order (ones if `spatial` is
    unknown: then the bias is folded as if every tap always read inside)."""
    if (
        spatial is None
        or len(spatial) != len(kernel)
        or any(not isinstance(n, int) or n <= 0 for n in spatial)
    ):
        return np.ones(int(np.prod(kernel, dtype=np.int64)))
    rank = len(kernel)
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    total = np.ones(())
    for (begin, end), length, k, s, d in zip(
        _pads(attrs, kernel, spatial), spatial, kernel, strides, dilations, strict=True
    ):
        outputs = (length + begin + end - ((k - 1) * d + 1)) // s + 1
        if outputs <= 0:
            return np.ones(int(np.prod(kernel, dtype=np.int64)))
        index = np.arange(outputs)[:, None] * s - begin + np.arange(k)[None, :] * d
        inside = ((index >= 0) & (index < length)).mean(axis=0)
        total = np.multiply.outer(total, inside)
    return total.reshape(-1)
