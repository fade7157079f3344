"""Per-channel activation statistics as sums, so they add up across batches and workers.

A `ChannelStats` holds, for one tensor and one channel axis, the number of values summed per
channel and the per-channel sums of x, |x| and x², and optionally the C x C Gram matrix sum
(sum over positions of x xᵀ). Two of them over disjoint samples merge into the statistics of
the union; the derived `mean`, `mean_abs` and `var` are computed from the sums at the end.

>>> import numpy as np
>>> x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)  # N=2, C=3, L=2
>>> whole = ChannelStats.of(x, axis=1)
>>> halves = ChannelStats.of(x[:1], axis=1) + ChannelStats.of(x[1:], axis=1)
>>> bool(np.allclose(whole.mean, halves.mean)), whole.count, whole.mean.tolist()
(True, 4, [3.5, 5.5, 7.5])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelStats:
    """Sums over every value of one tensor, per channel along `axis` (float64 throughout).

    `count` is how many values each channel summed (the tensor's size / channels); `gram`, when
    collected, is sum over positions of the outer product of the channel vector (C x C).

    >>> s = ChannelStats.of(np.array([[1.0, -2.0], [3.0, 2.0]]), axis=1, gram=True)
    >>> s.mean.tolist(), s.mean_abs.tolist(), s.var.tolist(), s.gram.tolist()
    ([2.0, 0.0], [2.0, 2.0], [1.0, 4.0], [[10.0, 4.0], [4.0, 8.0]])
    """

    axis: int
    count: int
    sum: np.ndarray
    sum_abs: np.ndarray
    sum_sq: np.ndarray
    gram: np.ndarray | None = None

    @classmethod
    def of(cls, x: np.ndarray, axis: int = 1, *, gram: bool = False) -> ChannelStats:
        """The sums of one array; `axis` may be negative (stored as the non-negative axis).

        ValueError if `axis` is out of range for `x` or `x` has no values along it.
        """
        array = np.asarray(x)
        if not -array.ndim <= axis < array.ndim:
            raise ValueError(f"channel axis {axis} is out of range for a tensor of shape {array.shape}")
        axis = axis % array.ndim
        channels = array.shape[axis]
        if channels == 0:
            raise ValueError(f"tensor of shape {array.shape} has no channels along axis {axis}")
        flat = np.moveaxis(array.astype(np.float64, copy=False), axis, -1).reshape(-1, channels)
        return cls(
            axis=axis,
            count=int(flat.shape[0]),
            sum=flat.sum(axis=0),
            sum_abs=np.abs(flat).sum(axis=0),
            sum_sq=np.square(flat).sum(axis=0),
            gram=flat.T @ flat if gram else None,
        )

    @property
    def channels(self) -> int:
        return int(self.sum.shape[0])

    def merge(self, other: ChannelStats) -> ChannelStats:
        """The statistics of both sets of values (a new object; neither operand changes).

        ValueError if the axes or channel counts differ, or only one of them has a Gram matrix.
        """
        if self.axis != other.axis or self.channels != other.channels:
            raise ValueError(
                f"cannot merge statistics of {self.channels} channels on axis {self.axis} with "
                f"{other.channels} channels on axis {other.axis}"
            )
        if (self.gram is None) != (other.gram is None):
            raise ValueError("cannot merge statistics with a Gram matrix and statistics without one")
        return ChannelStats(
            axis=self.axis,
            count=self.count + other.count,
            sum=self.sum + other.sum,
            sum_abs=self.sum_abs + other.sum_abs,
            sum_sq=self.sum_sq + other.sum_sq,
            gram=None if self.gram is None or other.gram is None else self.gram + other.gram,
        )

    def __add__(self, other: ChannelStats) -> ChannelStats:
        return self.merge(other)

    @property
    def mean(self) -> np.ndarray:
        """Mean per channel."""
        return self.sum / self.count

    @property
    def mean_abs(self) -> np.ndarray:
        """Mean absolute value per channel."""
        return self.sum_abs / self.count

    @property
    def var(self) -> np.ndarray:
        """Population variance per channel (E[x²] - E[x]², clipped at 0 against rounding)."""
        return np.maximum(self.sum_sq / self.count - np.square(self.mean), 0.0)
