"""Selection: how many units stay, alignment, and the head/channel split."""

from __future__ import annotations

import pytest

from onnxprune.errors import UsageError
from onnxprune.selection import DEFAULT_ROUND_TO, kept_count


@pytest.mark.parametrize(
    ("size", "ratio", "round_to", "kept"),
    [
        (64, 0.4, 1, 39),
        (64, 0.4, 8, 40),
        (64, 0.0, 8, 64),  # ratio 0 never removes, even when 64 is aligned already
        (20, 0.0, 8, 20),  # nor rounds an unaligned group down
        (20, 0.1, 8, 16),
        (6, 0.4, 8, 4),  # too small to align: the ratio alone
        (15, 0.5, 8, 8),
        (1000, 0.4, 16, 608),
        (3, 0.9, 1, 1),  # at least one unit stays
        (100, 0.95, 8, 8),
        (32, 0.4, 8, 16),  # 20 kept is halfway between 16 and 24: ties go to the even multiple
    ],
)
def test_kept_count(size, ratio, round_to, kept):
    assert kept_count(size, ratio, round_to) == kept


def test_default_alignment_is_eight():
    assert DEFAULT_ROUND_TO == 8


@pytest.mark.parametrize(("ratio", "round_to"), [(1.0, 1), (-0.1, 1), (0.5, 0)])
def test_bad_values_are_usage_errors(ratio, round_to):
    with pytest.raises(UsageError):
        kept_count(10, ratio, round_to)
