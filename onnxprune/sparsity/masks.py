"""Scores and masks: which entries of each weight weight sparsity zeroes.

- `magnitude` scores are |W|; with activation norms, `wanda` scores are |W| · ‖X_c‖ (Wanda, Sun
  et al. 2023), the norm of the activation channel each entry multiplies.
- `layer_mask` zeroes the round(ratio · size) lowest-scored entries of one weight, as
  ``torch.nn.utils.prune.l1_unstructured`` does; `global_masks` the round(ratio · total)
  lowest over all weights together, as ``global_unstructured`` does.
- `nm_mask` keeps the n highest of every m consecutive entries along the reduction axis.

Ties are broken by position, so a mask is the same on every run.

>>> w = np.array([[0.5, -2.0, 0.1, 3.0]])
>>> layer_mask(magnitude(w), 0.5).tolist()
[[False, True, False, True]]
>>> nm_mask(magnitude(w), 1, 1, 2).tolist()
[[False, True, False, True]]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnxprune.sparsity.layout import SparseTarget, from_rows, reduction_rows


def magnitude(weight: np.ndarray) -> np.ndarray:
    """|W| in float64."""
    return np.abs(weight.astype(np.float64))


def wanda(weight: np.ndarray, target: SparseTarget, norms: np.ndarray) -> np.ndarray:
    """|W| times the norm of the activation channel each entry multiplies.

    `norms` has one value per channel of the activation (``C``); a Conv of `groups` groups reads
    channels ``(o // (O / groups)) · C/groups + i`` through ``W[o, i, ...]``. ValueError when the
    channel counts do not fit the weight.

    >>> t = SparseTarget("n", "MatMul", "w", 0, "x", -1)
    >>> wanda(np.ones((2, 3)), t, np.array([1.0, 4.0])).tolist()
    [[1.0, 1.0, 1.0], [4.0, 4.0, 4.0]]
    """
    scores = magnitude(weight)
    k = weight.shape[target.axis]
    norms = np.asarray(norms, dtype=np.float64)
    if target.op_type == "Conv" and target.groups > 1:
        out = weight.shape[0]
        if norms.shape != (k * target.groups,) or out % target.groups:
            raise ValueError(
                f"{norms.shape[0]} channels do not fit a {target.groups}-group weight {weight.shape}"
            )
        block = (np.arange(out) // (out // target.groups))[:, None] * k + np.arange(k)[None, :]
        per = norms[block].reshape((out, k) + (1,) * (weight.ndim - 2))
        return scores * per
    if norms.shape != (k,):
        raise ValueError(
            f"{norms.shape[0]} activation channels, but axis {target.axis} of {weight.shape} has {k}"
        )
    shape = [1] * weight.ndim
    shape[target.axis] = k
    return scores * norms.reshape(shape)


def _lowest(flat: np.ndarray, count: int) -> np.ndarray:
    """Mask of the `count` lowest values (ties at the threshold: the earlier positions first), in
    linear time: a partition finds the threshold, no full sort."""
    drop = np.zeros(flat.size, dtype=bool)
    if count <= 0:
        return drop
    if count >= flat.size:
        drop[:] = True
        return drop
    threshold = np.partition(flat, count - 1)[count - 1]
    np.less(flat, threshold, out=drop)
    ties = np.flatnonzero(flat == threshold)[: count - int(np.count_nonzero(drop))]
    drop[ties] = True
    return drop


def layer_mask(scores: np.ndarray, ratio: float) -> np.ndarray:
    """Keep mask (True: kept) zeroing the round(ratio · size) lowest-scored entries."""
    return ~_lowest(scores.reshape(-1), round(ratio * scores.size)).reshape(scores.shape)


def global_masks(scores: Mapping[str, np.ndarray], ratio: float) -> dict[str, np.ndarray]:
    """Keep masks zeroing the round(ratio · total) lowest-scored entries over all `scores` at once."""
    names = list(scores)
    if not names:
        return {}
    flat = np.concatenate([scores[n].reshape(-1) for n in names])
    keep = ~_lowest(flat, round(ratio * flat.size))
    masks, start = {}, 0
    for name in names:
        size = scores[name].size
        masks[name] = keep[start : start + size].reshape(scores[name].shape)
        start += size
    return masks


def nm_mask(scores: np.ndarray, axis: int, n: int, m: int) -> np.ndarray:
    """Keep mask with the `n` highest of every `m` consecutive entries along `axis` (whose length
    must be a multiple of `m`)."""
    rows = reduction_rows(scores, axis)
    k = rows.shape[1]
    groups = rows.reshape(-1, m)
    # the m - n lowest of each group go; stable, so equal scores lose in order of position
    order = np.argsort(groups, axis=1, kind="stable")[:, : m - n]
    keep = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(keep, order, False, axis=1)
    return from_rows(keep.reshape(-1, k), scores.shape, axis)
