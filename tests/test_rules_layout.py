"""Channel rules of layout ops: axes move (Transpose, Squeeze), merge into blocks (Flatten,
Reshape), get offsets (Concat, Split, Slice) or keep their size (Gather, Pad, Resize) while
the channel axis is tracked through them, and the shape constants that encode a channel
count are rewritten. The cases live in two modules, by what the op does to the channel axis:
tests/layout_cases_axes.py and tests/layout_cases_sizes.py."""

from __future__ import annotations

import pytest

from tests.layout_cases_axes import AXES_CASES
from tests.layout_cases_sizes import SIZE_CASES
from tests.rule_cases import Case, check_pruning, check_structure, ids, runnable

CASES = [*AXES_CASES, *SIZE_CASES]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
