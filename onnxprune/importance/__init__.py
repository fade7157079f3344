"""Importance criteria: how much each unit of a coupling group matters.

Every module of this package that defines `CRITERIA` (a tuple of `Importance` instances)
contributes them to the default registry, so adding a criterion is one new module (and its
test): nothing else lists it. The CLI's `--criterion` choices come from the registry.

>>> registry = default_importances()
>>> registry.names()
('activation', 'fluctuation', 'l1', 'l2')
>>> registry.get("l1").summary
'L1 norm of every weight slice the unit occupies'
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator

from onnxprune.errors import UsageError
from onnxprune.importance.base import Importance, ScoringInputs, UnitScores


class ImportanceRegistry:
    """Criteria by name. Registering a name twice is an error."""

    def __init__(self, criteria: Iterable[Importance] = ()) -> None:
        self._by_name: dict[str, Importance] = {}
        for criterion in criteria:
            self.add(criterion)

    def add(self, criterion: Importance) -> None:
        if criterion.name in self._by_name:
            raise ValueError(f"an importance named {criterion.name!r} is already registered")
        self._by_name[criterion.name] = criterion

    def get(self, name: str) -> Importance:
        """The criterion called `name`; a UsageError naming the known ones otherwise."""
        found = self._by_name.get(name)
        if found is None:
            raise UsageError(f"criterion {name!r} is not one of {', '.join(self.names())}")
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __iter__(self) -> Iterator[Importance]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def default_importances() -> ImportanceRegistry:
    """A registry of every criterion the modules of this package define, in module order."""
    registry = ImportanceRegistry()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for criterion in getattr(module, "CRITERIA", ()):
            registry.add(criterion)
    return registry


__all__ = ["Importance", "ImportanceRegistry", "ScoringInputs", "UnitScores", "default_importances"]
