"""The op table: everything onnxprune knows about an op, in one entry per (domain, op type,
opset range).

An entry holds the op's channel rule (how channels flow through it), its rewriter when its
nodes store channel counts (Split sizes, Reshape targets, Conv `group`, head counts, ...), its
MAC formula when pruning makes it cheaper, and the inputs it reads per channel. The table is
an object built explicitly from lists of modules (`default_op_table`), never a global filled by
imports; the analysis and the passes take it as a parameter. Building refuses two entries for
one op whose opset ranges overlap, a rewriter or formula for an op without a rule, and an op
that declares channel counts but has no rewriter.

To add an op: give its rule in the family module under `analysis/rules/` a
`@channel_rule("Op", counts=..., per_channel=...)` tag (a new family module goes into
`RULE_MODULES`); if its nodes store channel counts, tag a rewriter in `onnxprune/rewriters.py`
with `@rewrites("Op")`; if pruning makes it cheaper, tag a formula in `onnxprune/macs.py` with
`@macs_of("Op")`; add a case to `tests/test_rules_<family>.py` and a row to README's op table.

>>> table = default_op_table()
>>> entry = table.lookup("", "Split", 18)
>>> entry.counts, entry.rewriter.__name__
(('split', 'num_outputs', 1), 'split_sizes')
>>> table.lookup("ai.onnx", "Conv", 11).macs.__name__
'conv_macs'
>>> table.lookup("", "NonMaxSuppression", 11) is None
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import ModuleType

from onnxprune import macs, rewriters
from onnxprune.analysis.registry import Count, OpsetRange, PerChannel, Rule, rule_specs
from onnxprune.analysis.rules import (
    attention,
    conv,
    elementwise,
    layout,
    linear,
    normalization,
    recurrent,
    reduce,
    vocabulary,
)
from onnxprune.graph import norm_domain
from onnxprune.macs import MacFormula, formula_ops
from onnxprune.rewriters import Rewriter, rewriter_ops

RULE_MODULES: tuple[ModuleType, ...] = (
    conv,
    linear,
    normalization,
    elementwise,
    layout,
    reduce,
    attention,
    recurrent,
    vocabulary,
)
"""The modules whose `@channel_rule` functions make the default table's entries."""
REWRITER_MODULES: tuple[ModuleType, ...] = (rewriters,)
MACS_MODULES: tuple[ModuleType, ...] = (macs,)


class OpTableError(RuntimeError):
    """The entries given to an OpTable contradict each other (a bug in onnxprune, not a model)."""


@dataclass(frozen=True)
class OpEntry:
    """What onnxprune knows about one op over one opset range (`opsets`: first, last; None =
    open). `counts` lists where its nodes store channel counts (attribute names, constant input
    indices); `per_channel` the inputs it reads element by element along channels ("all" for
    elementwise ops).

    >>> OpEntry("Relu", rule=print).reads_per_channel(0)
    False
    """

    op_type: str
    domain: str = ""
    opsets: OpsetRange = (1, None)
    rule: Rule | None = None
    counts: tuple[Count, ...] = ()
    per_channel: PerChannel = ()
    rewriter: Rewriter | None = None
    macs: MacFormula | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.op_type)

    def covers(self, opset: int) -> bool:
        """True when `opset` is inside the entry's range."""
        first, last = self.opsets
        return first <= opset and (last is None or opset <= last)

    def reads_per_channel(self, index: int) -> bool:
        """True when input `index` is read element by element along the channels."""
        return self.per_channel == "all" or index in self.per_channel

    def __str__(self) -> str:
        first, last = self.opsets
        return f"{self.domain or 'ai.onnx'}::{self.op_type} (opsets {first}..{'' if last is None else last})"


class OpTable:
    """Entries keyed by (domain, op type), each covering an opset range; see the module
    docstring for what building checks.

    >>> OpTable([OpEntry("Split", rule=print, counts=(1,))])
    Traceback (most recent call last):
    ...
    onnxprune.optable.OpTableError: ai.onnx::Split (opsets 1..) stores channel counts (1,) without a rewriter
    """

    def __init__(self, entries: Iterable[OpEntry]) -> None:
        self._by_op: dict[tuple[str, str], list[OpEntry]] = {}
        for entry in entries:
            entry = replace(entry, domain=norm_domain(entry.domain))
            _check_entry(entry)
            same = self._by_op.setdefault(entry.key, [])
            clash = next((e for e in same if _overlap(e.opsets, entry.opsets)), None)
            if clash is not None:
                raise OpTableError(f"{entry} is already registered (as {clash})")
            same.append(entry)
        self._costed = frozenset(k for k, same in self._by_op.items() if any(e.macs for e in same))

    def has_macs(self, op_type: str) -> bool:
        """True when some entry of `op_type` in the default domain has a MAC formula (a quick
        test before `lookup`)."""
        return ("", op_type) in self._costed

    def lookup(self, domain: str, op_type: str, opset: int) -> OpEntry | None:
        """The entry for `op_type` of `domain` whose range holds `opset`, or None (the analyzer
        then pins every axis the node touches, and nothing rewrites or counts the node)."""
        same = self._by_op.get((domain, op_type) if domain != "ai.onnx" else ("", op_type))
        if same is not None:  # (called for every node by every pass that asks: kept lean)
            for entry in same:
                first, last = entry.opsets
                if first <= opset and (last is None or opset <= last):
                    return entry
        return None

    def entries(self) -> list[OpEntry]:
        """Every entry, sorted by domain, op type and first opset."""
        return sorted((e for same in self._by_op.values() for e in same), key=lambda e: (e.key, e.opsets[0]))

    def ops(self) -> list[tuple[str, str]]:
        """Every (domain, op type) with an entry, sorted."""
        return sorted(self._by_op)

    @classmethod
    def from_modules(
        cls,
        rule_modules: Sequence[ModuleType],
        rewriter_modules: Sequence[ModuleType] = (),
        macs_modules: Sequence[ModuleType] = (),
    ) -> OpTable:
        """A table from the tagged functions of explicit modules: one entry per `@channel_rule`
        spec, joined with the `@rewrites` rewriter and `@macs_of` formula of its op."""
        rewriter_of = _tagged(rewriter_modules, rewriter_ops, "rewriter")
        macs_of = _tagged(macs_modules, formula_ops, "MAC formula")
        entries = [
            OpEntry(
                spec.op_type,
                spec.domain,
                spec.opsets,
                fn,
                spec.counts,
                spec.per_channel,
                rewriter_of.get((spec.domain, spec.op_type)),
                macs_of.get((spec.domain, spec.op_type)),
            )
            for fn in _defined_in(rule_modules)
            for spec in rule_specs(fn)
        ]
        ruled = {e.key for e in entries}
        for what, found in (("rewriter", rewriter_of), ("MAC formula", macs_of)):
            orphans = sorted(k for k in found if k not in ruled)
            if orphans:
                raise OpTableError(f"a {what} for {orphans}, which have no channel rule")
        return cls(entries)


@functools.cache
def default_op_table() -> OpTable:
    """The table of every op onnxprune supports (built once; a table is never mutated)."""
    return OpTable.from_modules(RULE_MODULES, REWRITER_MODULES, MACS_MODULES)


def _defined_in(modules: Sequence[ModuleType]) -> list[Callable[..., object]]:
    """The functions each module defines itself (not those it imports), in definition order."""
    return [
        fn
        for module in modules
        for fn in vars(module).values()
        if callable(fn) and getattr(fn, "__module__", None) == module.__name__
    ]


def _tagged(
    modules: Sequence[ModuleType], ops_of: Callable[[object], tuple[tuple[str, str], ...]], what: str
) -> dict[tuple[str, str], Callable[..., object]]:
    """The functions of `modules` tagged for each (domain, op type); a second one is an error."""
    found: dict[tuple[str, str], Callable[..., object]] = {}
    for fn in _defined_in(modules):
        for key in ops_of(fn):
            if key in found:
                raise OpTableError(f"a {what} for {key[0] or 'ai.onnx'}::{key[1]} is already registered")
            found[key] = fn
    return found


def _check_entry(entry: OpEntry) -> None:
    if entry.rule is None:
        raise OpTableError(f"{entry} has no channel rule")
    if entry.counts and entry.rewriter is None:
        raise OpTableError(f"{entry} stores channel counts {entry.counts} without a rewriter")
    first, last = entry.opsets
    if first < 1 or (last is not None and last < first):
        raise OpTableError(f"{entry} has an empty opset range")


def _overlap(a: OpsetRange, b: OpsetRange) -> bool:
    return (a[1] is None or b[0] <= a[1]) and (b[1] is None or a[0] <= b[1])
