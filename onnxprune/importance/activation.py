"""Activation-aware importance: what removing a unit takes out of the consumers' outputs, from
calibration statistics (`--calib`).

For every weight member of role "in" (a Conv with one group, Gemm or MatMul reading an
activation x along that axis), removing channel c removes `W[:, c] · x_c` from the consumer's
output; its expected energy is ‖W[:, c]‖² · E[x_c²]. `activation` sums that over the unit's
channels and the group's consumers (Wanda's |W|·‖X‖, squared, per channel rather than per
weight); `fluctuation` uses the variance of x_c instead of its second moment (FLAP): what stays
after the channel's mean is folded into the consumer's bias by compensation. Both are energies of
the consumers' outputs, so they compare across groups. A group none of whose consumers has
statistics (its channels reach no Conv/Gemm/MatMul weight) is scored by the L2 magnitude of its
weights instead.

>>> from onnxprune.importance import default_importances
>>> default_importances().get("fluctuation").needs_activations
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from onnxprune.analysis import Group
from onnxprune.importance.base import Importance, ScoringInputs, UnitScores
from onnxprune.importance.magnitude import NormCache, axis_norms, member_table

Moment = Literal["second", "variance"]


class ActivationEnergy(Importance):
    """Σ over consumers and the unit's channels of ‖W[:, c]‖² · E[x_c²] (`second`) or Var[x_c]
    (`variance`): one row per group."""

    needs_activations = True

    def __init__(self, name: str, moment: Moment, summary: str) -> None:
        self.name = name
        self.moment = moment
        self.summary = summary

    def score(self, groups: Sequence[Group], inputs: ScoringInputs) -> dict[int, UnitScores]:
        stats = inputs.activations
        norms: NormCache = {}
        found: dict[int, UnitScores] = {}
        for group in groups:
            row = self._energy(group, inputs, norms) if stats is not None else None
            table = member_table(group, inputs.weights, "l2", norms) if row is None else row[None, :]
            found[group.id] = UnitScores(table)
        return found

    def _energy(self, group: Group, inputs: ScoringInputs, norms: NormCache) -> np.ndarray | None:
        """The group's row, or None when no consumer of it has statistics."""
        total: np.ndarray | None = None
        for member in group.weight_members:
            if member.role != "in":
                continue
            channel = inputs.activations.of_weight(member.tensor, member.axis)
            if channel is None or channel.channels != member.size:
                continue
            key = (member.tensor, member.axis, "l2")  # shared with the magnitude tables
            columns = norms.get(key)
            if columns is None:  # per position: the sum of W² over every other axis
                columns = norms[key] = axis_norms(inputs.weights[member.tensor], member.axis, "l2")
            moment = channel.var if self.moment == "variance" else channel.sum_sq / channel.count
            row = (columns[member.positions] * moment[member.positions]).sum(axis=1)
            total = row if total is None else total + row
        return total


CRITERIA = (
    ActivationEnergy(
        "activation",
        "second",
        "‖W[:, c]‖² · E[x_c²] over the consumers: the output energy a unit carries (needs --calib)",
    ),
    ActivationEnergy(
        "fluctuation",
        "variance",
        "‖W[:, c]‖² · Var[x_c] over the consumers (FLAP; pairs with bias compensation; needs --calib)",
    ),
)
