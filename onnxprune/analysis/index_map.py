"""Index maps: how the positions of one channel axis correspond to those of another.

Every map relates a source axis `a` of size `size_a` to a target axis `b` of size
`size_b` and yields explicit element pairs. Positions joined by a pair are removed
together. The kinds cover what ops do to a channel axis: pass it through, place it at
an offset (Concat, Split, Slice), step through it, expand each position into a block
(Flatten, a Reshape that splits an axis into heads, depthwise multipliers), fold it
modulo a period (grouped convolutions), or pick explicit positions (Gather).

>>> IndexMap.blocks(2).pairs(2, 4)
(array([0, 0, 1, 1]), array([0, 1, 2, 3]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndexMap:
    """A correspondence between positions of axis `a` and axis `b` (see module docstring)."""

    kind: str
    offset: int = 0
    step: int = 1
    block: int = 1
    period: int = 1
    indices: tuple[int, ...] = ()

    @staticmethod
    def identity() -> IndexMap:
        """a[i] <-> b[i]; both axes have the same size."""
        return IndexMap("identity")

    @staticmethod
    def at_offset(offset: int, step: int = 1) -> IndexMap:
        """a[i] <-> b[offset + i * step] (Concat input into output, Slice or Split output into input)."""
        return IndexMap("offset", offset=offset, step=step)

    @staticmethod
    def blocks(block: int) -> IndexMap:
        """a[i] <-> b[i * block : (i + 1) * block] (a channel becomes a block of features or a head)."""
        return IndexMap("blocks", block=block)

    @staticmethod
    def digit(inner: int) -> IndexMap:
        """a[i] <-> every b[p] with (p // inner) % size_a == i: `a` is one factor of the merged
        axis `b`, `inner` the product of the factors after it (blocks when `a` is outermost,
        a stride when it is innermost: channel shuffle, channels-last flatten)."""
        return IndexMap("digit", block=inner)

    @staticmethod
    def modulo(period: int) -> IndexMap:
        """a[i] <-> b[i % period] (the local index of a channel inside its group)."""
        return IndexMap("modulo", period=period)

    @staticmethod
    def gather(indices: tuple[int, ...]) -> IndexMap:
        """a[j] <-> b[indices[j]] (Gather with constant indices)."""
        return IndexMap("gather", indices=tuple(indices))

    def pairs(self, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
        """The element pairs (positions in a, positions in b) this map joins.

        Raises ValueError if the sizes do not fit the map.
        """
        if self.kind == "identity":
            _expect(size_a == size_b, f"identity map between sizes {size_a} and {size_b}")
            idx = np.arange(size_a)
            return idx, idx.copy()
        if self.kind == "offset":
            ia = np.arange(size_a)
            ib = self.offset + ia * self.step
            _expect(
                size_a == 0 or (ib.min() >= 0 and ib.max() < size_b),
                f"offset map {self.offset}+i*{self.step} of {size_a} leaves axis of {size_b}",
            )
            return ia, ib
        if self.kind == "blocks":
            _expect(size_a * self.block == size_b, f"blocks of {self.block}: {size_a} -> {size_b}")
            ib = np.arange(size_b)
            return ib // self.block, ib
        if self.kind == "digit":
            _expect(
                size_a > 0 and size_b % (self.block * size_a) == 0,
                f"factor of {size_a} with inner {self.block} in axis of {size_b}",
            )
            ib = np.arange(size_b)
            return (ib // self.block) % size_a, ib
        if self.kind == "modulo":
            _expect(
                self.period == size_b and size_a % self.period == 0,
                f"modulo {self.period}: {size_a} -> {size_b}",
            )
            ia = np.arange(size_a)
            return ia, ia % self.period
        if self.kind == "gather":
            ib = np.asarray(self.indices, dtype=np.int64)
            ib = np.where(ib < 0, ib + size_b, ib)
            _expect(
                len(ib) == size_a and (size_a == 0 or (ib.min() >= 0 and ib.max() < size_b)),
                f"gather of {size_a} indices into axis of {size_b}",
            )
            return np.arange(size_a), ib
        raise ValueError(f"unknown index map kind {self.kind!r}")

    def describe(self) -> str:
        params = {
            "offset": f"offset {self.offset} step {self.step}",
            "blocks": f"blocks of {self.block}",
            "modulo": f"modulo {self.period}",
            "digit": f"factor with inner {self.block}",
            "gather": f"gather {len(self.indices)}",
        }
        return params.get(self.kind, self.kind)


OFFSET_KINDS = ("offset", "identity")
"""The kinds `offset_pairs` takes: most links of a graph (Concat, Split, Slice, and identities)."""


def offset_pairs(
    maps: list[IndexMap], sizes_a: list[int], sizes_b: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pairs` of many identity and offset maps at once: all their pairs (positions in a,
    positions in b) concatenated, and the index of the map each pair comes from.

    Raises ValueError, as `pairs` does, if a map does not fit its sizes.

    >>> ia, ib, which = offset_pairs([IndexMap.at_offset(2), IndexMap.identity()], [1, 2], [3, 2])
    >>> ia.tolist(), ib.tolist(), which.tolist()
    ([0, 0, 1], [2, 0, 1], [0, 1, 1])
    """
    size_a = np.asarray(sizes_a, dtype=np.int64)
    size_b = np.asarray(sizes_b, dtype=np.int64)
    shift = np.array([m.offset for m in maps], dtype=np.int64)
    step = np.array([m.step for m in maps], dtype=np.int64)
    identity = np.array([m.kind == "identity" for m in maps], dtype=bool)
    last = shift + (size_a - 1) * step
    fits = np.where(
        identity,
        size_a == size_b,
        (size_a == 0) | ((np.minimum(shift, last) >= 0) & (np.maximum(shift, last) < size_b)),
    )
    if not fits.all():
        k = int(np.flatnonzero(~fits)[0])
        maps[k].pairs(int(size_a[k]), int(size_b[k]))  # raises ValueError naming the sizes
        raise ValueError(f"{maps[k].describe()} map does not fit {size_a[k]} -> {size_b[k]}")
    which = np.repeat(np.arange(len(maps)), size_a)
    i = np.arange(len(which)) - np.repeat(np.cumsum(size_a) - size_a, size_a)  # position within a
    return i, shift[which] + i * step[which], which


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)
