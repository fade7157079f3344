"""Importance of each unit of a coupling group, from the magnitude of its weight slices.

Each weight member contributes the L1 or L2 norm of the slice a unit occupies, divided by
the member's mean so that large and small tensors weigh alike; BatchNorm scales and
biases count like any other member.

>>> scores = unit_scores(group, weights, "l1")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from onnxprune.analysis import Group

Criterion = Literal["l1", "l2"]
CRITERIA = ("l1", "l2")


def unit_scores(
    group: Group,
    weights: Mapping[str, np.ndarray],
    criterion: Criterion = "l1",
    norms: dict[tuple[str, int, str], np.ndarray] | None = None,
) -> np.ndarray:
    """One score per unit of `group` (higher is more important).

    `norms` caches the per-position norms of (tensor, axis, criterion) across calls: a tensor
    shared by many groups (a DenseNet feature map's BatchNorm) is read and reduced once.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; expected one of {', '.join(CRITERIA)}")
    norms = {} if norms is None else norms
    scores: list[np.ndarray] = []  # per weight member, in order: each unit's sum of norms there
    for member in group.weight_members:
        key = (member.tensor, member.axis, criterion)
        per_position = norms.get(key)
        if per_position is None:
            array = weights[member.tensor]
            if array.dtype.kind != "f":
                continue
            if member.axis < 2:  # filters and input channels: both from one pass over the tensor
                for axis, values in enumerate(_leading_axes_norms(array, criterion)):
                    norms[(member.tensor, axis, criterion)] = values
                per_position = norms[key]
            else:
                per_position = norms[key] = _axis_norms(array, member.axis, criterion)
        if member.positions.shape[1] == 1:  # a unit is one position: no sum over a block
            rows = per_position[member.positions[:, 0]]
        else:
            rows = per_position[member.positions].sum(axis=1)
        scores.append(rows)
    if not scores:
        return np.zeros(group.size, dtype=np.float64)
    table = np.concatenate(scores).reshape(len(scores), group.size)  # one row per member
    if criterion == "l2":
        table = np.sqrt(table)
    means = table.mean(axis=1)
    # each member weighs alike: its scores divided by their mean (members all zero add nothing)
    return (table[means > 0] / means[means > 0, None]).sum(axis=0)


def _axis_norms(array: np.ndarray, axis: int, criterion: Criterion) -> np.ndarray:
    """Per position of `axis`: the sum of |w| (l1) or of w**2 (l2) over every other axis."""
    others = tuple(a for a in range(array.ndim) if a != axis)
    values = array.astype(np.float64)
    values = np.abs(values, out=values) if criterion == "l1" else np.square(values, out=values)
    return values.sum(axis=others) if others else values


def _leading_axes_norms(array: np.ndarray, criterion: Criterion) -> list[np.ndarray]:
    """`_axis_norms` of axis 0, and of axis 1 when there is one, from one pass over the values.

    The values are taken a block of leading rows at a time (at most `_BLOCK` of them in float64),
    so a large weight is never copied whole; in each block the kernel is summed first (by einsum:
    numpy's own reduction over a short axis of 9 is three times slower), then the rows and
    columns. No BLAS call: its threads would spin on the cores the rest of the run needs.
    """
    if array.ndim < 2 or array.size == 0:
        return [_axis_norms(array, axis, criterion) for axis in range(min(array.ndim, 2))]
    rows, cols = array.shape[:2]
    values = array.reshape(rows, cols, -1)
    kernel = values.shape[2]
    by_row, by_col = np.empty(rows), np.zeros(cols)
    step = max(1, _BLOCK // (cols * kernel))
    for start in range(0, rows, step):
        block = values[start : start + step].astype(np.float64)  # float16 squares overflow
        block = np.abs(block, out=block) if criterion == "l1" else np.square(block, out=block)
        plane = np.einsum("rk->r", block.reshape(-1, kernel)) if kernel > 1 else block
        plane = plane.reshape(-1, cols)
        by_row[start : start + len(plane)] = plane.sum(axis=1)
        by_col += plane.sum(axis=0)
    return [by_row, by_col]


_BLOCK = 1 << 20
"""Values converted to float64 at a time when reducing a weight (8 MiB)."""
