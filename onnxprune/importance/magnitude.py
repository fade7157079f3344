"""Magnitude importance: the L1 or L2 norm of every weight slice a unit occupies.

Each weight member of a group gives one row: the norm of the unit's slice of that tensor (its
positions along the member's axis, every other axis summed), BatchNorm scales and biases like any
other member. No data is needed; scores are on the scale of the weights themselves.

>>> from onnxprune.importance import default_importances
>>> default_importances().get("l2").summary
'L2 norm of every weight slice the unit occupies'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from onnxprune.analysis import Group
from onnxprune.importance.base import Importance, ScoringInputs, UnitScores

Norm = Literal["l1", "l2"]

NormCache = dict[tuple[str, int, str], np.ndarray]
"""Per-position norms of (tensor, axis, norm), shared by the groups one call scores: a tensor
read by many groups (a DenseNet feature map's BatchNorm) is read and reduced once."""


class Magnitude(Importance):
    """L1 (`l1`) or L2 (`l2`) norm of the unit's weight slices, one row per weight member."""

    def __init__(self, norm: Norm) -> None:
        self.norm = norm
        self.name = norm
        self.summary = f"{norm.upper()} norm of every weight slice the unit occupies"

    def score(self, groups: Sequence[Group], inputs: ScoringInputs) -> dict[int, UnitScores]:
        norms: NormCache = {}
        scratch = np.empty(_BLOCK)
        return {g.id: UnitScores(member_table(g, inputs.weights, self.norm, norms, scratch)) for g in groups}


CRITERIA = (Magnitude("l1"), Magnitude("l2"))


def member_table(
    group: Group,
    weights: Mapping[str, np.ndarray],
    norm: Norm = "l1",
    norms: NormCache | None = None,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """The (members x units) table of `group`: row i is weight member i's norm of each unit's
    slice (members that are not float tensors give no row). `scratch` is a float64 buffer to
    convert blocks of weights in (`_leading_axes_norms`)."""
    norms = {} if norms is None else norms
    rows: list[np.ndarray] = []  # per weight member, in order: each unit's sum of norms there
    for member in group.weight_members:
        key = (member.tensor, member.axis, norm)
        per_position = norms.get(key)
        if per_position is None:
            array = weights[member.tensor]
            if array.dtype.kind != "f":
                continue
            if member.axis < 2:  # filters and input channels: both from one pass over the tensor
                for axis, values in enumerate(_leading_axes_norms(array, norm, scratch)):
                    norms[(member.tensor, axis, norm)] = values
                per_position = norms[key]
            else:
                per_position = norms[key] = axis_norms(array, member.axis, norm)
        if member.positions.shape[1] == 1:  # a unit is one position: no sum over a block
            rows.append(per_position[member.positions[:, 0]])
        else:
            rows.append(per_position[member.positions].sum(axis=1))
    if not rows:
        return np.zeros((0, group.size), dtype=np.float64)
    table = np.concatenate(rows).reshape(len(rows), group.size)
    return np.sqrt(table) if norm == "l2" else table


def axis_norms(array: np.ndarray, axis: int, norm: Norm) -> np.ndarray:
    """Per position of `axis`: the sum of |w| (l1) or of w**2 (l2) over every other axis."""
    others = tuple(a for a in range(array.ndim) if a != axis)
    values = array.astype(np.float64)
    values = np.abs(values, out=values) if norm == "l1" else np.square(values, out=values)
    return values.sum(axis=others) if others else values


def _leading_axes_norms(array: np.ndarray, norm: Norm, scratch: np.ndarray | None = None) -> list[np.ndarray]:
    """`axis_norms` of axis 0, and of axis 1 when there is one, from one pass over the values.

    The values are taken a block of leading rows at a time (at most `_BLOCK` of them in float64,
    converted into `scratch` when given: one buffer for every tensor of a scoring run, so no
    fresh pages per block), so a large weight is never copied whole; in each block the kernel is
    summed first (by einsum: numpy's own reduction over a short axis of 9 is three times slower),
    then the rows and columns. No BLAS call: its threads would spin on the cores the rest of the
    run needs.
    """
    if array.ndim < 2 or array.size == 0:
        return [axis_norms(array, axis, norm) for axis in range(min(array.ndim, 2))]
    rows, cols = array.shape[:2]
    values = array.reshape(rows, cols, -1)
    kernel = values.shape[2]
    by_row, by_col = np.empty(rows), np.zeros(cols)
    step = max(1, _BLOCK // (cols * kernel))
    for start in range(0, rows, step):
        source = values[start : start + step]
        if scratch is not None and source.size <= scratch.size:
            block = scratch[: source.size].reshape(source.shape)
            np.copyto(block, source)  # float16 squares overflow: always float64
        else:
            block = source.astype(np.float64)
        block = np.abs(block, out=block) if norm == "l1" else np.square(block, out=block)
        plane = np.einsum("rk->r", block.reshape(-1, kernel)) if kernel > 1 else block
        plane = plane.reshape(-1, cols)
        by_row[start : start + len(plane)] = plane.sum(axis=1)
        by_col += plane.sum(axis=0)
    return [by_row, by_col]


_BLOCK = 1 << 20
"""Values converted to float64 at a time when reducing a weight (8 MiB)."""
