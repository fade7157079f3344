"""How a channel rule declares the ops it serves: a tag on the function, no registry.

`@channel_rule("Relu", "Sigmoid")` attaches a `RuleSpec` per op type to the rule function and
returns the function unchanged; nothing is recorded anywhere else. The op table
(`onnxprune.optable.default_op_table`) reads the tags of the functions of an explicit list of
rule modules. A spec carries what the table needs to know about the op besides the rule:

* `opsets`: the opset range (first, last; None = open) the rule is valid for;
* `counts`: where a node of the op stores a channel count (an attribute name, or the index of
  a constant input): the table refuses an op that declares counts and has no rewriter;
* `per_channel`: the inputs read element by element along the channels ("all" for
  elementwise ops): a constant there that several nodes share may be copied per reader.

Stack decorators to give op types of one rule different specs.

>>> @channel_rule("Relu")
... @channel_rule("Split", counts=("split", 1))
... def rule(node, ctx): ...
>>> [(s.op_type, s.counts) for s in rule_specs(rule)]
[('Relu', ()), ('Split', ('split', 1))]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import onnx

from onnxprune.analysis.flow import ChannelFlow, RuleContext
from onnxprune.graph import norm_domain

Rule = Callable[[onnx.NodeProto, RuleContext], ChannelFlow]
OpsetRange = tuple[int, int | None]
Count = str | int
"""Where a node stores a channel count: an attribute name, or the index of a constant input."""
PerChannel = tuple[int, ...] | Literal["all"]

ALL_OPSETS: OpsetRange = (1, None)
_TAG = "__channel_rules__"


@dataclass(frozen=True)
class RuleSpec:
    """One op type a rule function serves, and what the op table must know about the op."""

    op_type: str
    domain: str = ""
    opsets: OpsetRange = ALL_OPSETS
    counts: tuple[Count, ...] = ()
    per_channel: PerChannel = ()


def channel_rule(
    *op_types: str,
    domain: str = "",
    opsets: OpsetRange = ALL_OPSETS,
    counts: tuple[Count, ...] = (),
    per_channel: PerChannel = (),
) -> Callable[[Rule], Rule]:
    """Tag `fn` as the channel rule of each op type in `op_types` (see the module docstring)."""

    def wrap(fn: Rule) -> Rule:
        specs = [RuleSpec(op, norm_domain(domain), opsets, tuple(counts), per_channel) for op in op_types]
        setattr(fn, _TAG, (*specs, *getattr(fn, _TAG, ())))
        return fn

    return wrap


def rule_specs(fn: object) -> tuple[RuleSpec, ...]:
    """The specs `@channel_rule` attached to `fn` (empty for any other object)."""
    return getattr(fn, _TAG, ()) if callable(fn) else ()
