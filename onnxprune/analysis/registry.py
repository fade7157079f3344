"""The op rule registry: one channel-flow rule per (domain, op type).

Rules register with `@register("Relu", "Sigmoid")`; registering an op twice is an
error. Rule modules are imported explicitly by `onnxprune.analysis.rules`.

>>> from onnxprune.analysis import rules  # noqa: F401  (fills the registry)
>>> lookup("", "Conv") is not None
True
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from onnxprune.analysis.flow import ChannelFlow, RuleContext

Rule = Callable[[onnx.NodeProto, RuleContext], ChannelFlow]

_RULES: dict[tuple[str, str], Rule] = {}


def register(*op_types: str, domain: str = "") -> Callable[[Rule], Rule]:
    """Register `fn` as the channel rule of each op type in `op_types`."""

    def wrap(fn: Rule) -> Rule:
        for op in op_types:
            key = (_norm(domain), op)
            if key in _RULES:
                raise RuntimeError(f"a channel rule for {domain or 'ai.onnx'}::{op} is already registered")
            _RULES[key] = fn
        return fn

    return wrap


def lookup(domain: str, op_type: str) -> Rule | None:
    """The rule for an op, or None (the analyzer then pins every axis the node touches)."""
    return _RULES.get((_norm(domain), op_type))


def registered_ops() -> list[tuple[str, str]]:
    """Every (domain, op type) that has a rule, sorted."""
    return sorted(_RULES)


def _norm(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
