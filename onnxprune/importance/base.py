"""What an importance criterion is: per-unit scores of coupling groups, from what the session knows.

An importance is registered by name (see `onnxprune.importance.default_importances`), receives
the session's `ScoringInputs` (the weights, and activation statistics when calibration data was
given) and returns, for each group asked for, a `UnitScores` table: one row per weight member of
the group, one column per unit. A row is on the criterion's own documented scale (the L1 norm of
the unit's weight slice, for example), so rows of different groups can be compared; reducing the
rows to one score per unit is the target's business (`UnitScores.member_normalized` is the step
the uniform ratio takes).

>>> table = UnitScores(np.array([[1.0, 3.0], [10.0, 10.0]]))
>>> table.member_normalized().tolist()  # each row over its mean, summed: [0.5 + 1, 1.5 + 1]
[1.5, 2.5]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from onnxprune.analysis import Group
from onnxprune.calibration import ActivationStats


class ScoringInputs(Protocol):
    """What a criterion may read: the session provides both (`onnxprune.session.PruneSession`)."""

    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        """Weight values by tensor name (the input model's names), read when asked for."""
        ...

    @property
    def activations(self) -> ActivationStats | None:
        """Calibration statistics of the activations weights multiply, or None without data."""
        ...


@dataclass(frozen=True, eq=False)
class UnitScores:
    """Scores of the units of one group: `table[i, u]` is member row i's score of unit u
    (higher is more important). A group without float weight members has no rows."""

    table: np.ndarray

    @property
    def size(self) -> int:
        return int(self.table.shape[1])

    def member_normalized(self) -> np.ndarray:
        """One score per unit: each row divided by its mean, then summed over rows, so that large
        and small tensors weigh alike; all-zero rows add nothing. Scores of different groups are
        not comparable after this step (every group's scores average to its row count)."""
        means = self.table.mean(axis=1)
        if not len(means):
            return np.zeros(self.size, dtype=np.float64)
        return (self.table[means > 0] / means[means > 0, None]).sum(axis=0)

    def total(self) -> np.ndarray:
        """One score per unit on the criterion's own scale: the rows summed."""
        return self.table.sum(axis=0)


class Importance(ABC):
    """A named importance criterion. Subclasses give `name` and `summary` (shown by the CLI's
    help) and implement `score`; a criterion that `needs_activations` is refused without
    calibration data. Instances hold no state between calls."""

    name: str
    summary: str
    needs_activations: ClassVar[bool] = False

    @abstractmethod
    def score(self, groups: Sequence[Group], inputs: ScoringInputs) -> dict[int, UnitScores]:
        """`UnitScores` for every group of `groups`, by group id."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
