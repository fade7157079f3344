"""Shared machinery for the op rule tests: tiny models from ONNX text, and one case table format.

A case is a small graph written in the ONNX text format. Weights are *declared* in the
graph's initializer list without a value (``<float[4, 3, 3, 3] w1>``); the parser keeps such
declarations as value_info, and `build` turns each into an initializer of random values of
that shape and type. Initializers written with a value (shape constants, axes) keep it.

Every case is checked twice (`check_structure`, `check_pruning`):

* structure: what `onnxprune.analyze` finds: the number and sizes of prunable groups, which
  weight axes are (or are not) in a prunable group, and the barrier that pins them;
* numerics: `onnxprune.prune` at each ratio gives a model that `onnxprune.validate` accepts
  (checker, ONNX Runtime, slices, mask-equivalence parity), smaller when something is prunable,
  with the expected attribute and shape-constant rewrites.

>>> m = build('''g (float[1, 3, 4, 4] x) => (float[1, 2, 4, 4] y) <float[2, 3, 1, 1] w> {
...     y = Conv(x, w) }''')
>>> [(t.name, list(t.dims)) for t in m.graph.initializer]
[('w', [2, 3, 1, 1])]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

import onnxprune
from onnxprune.analysis import DependencyAnalysis, Group
from onnxprune.metrics import count_params

DEFAULT_OPSET = 17


def header(opset: int = DEFAULT_OPSET, domains: dict[str, int] | None = None) -> str:
    imports = [f'"" : {opset}', *(f'"{d}" : {v}' for d, v in (domains or {}).items())]
    ir = 10 if opset >= 21 else 8
    return f"<ir_version: {ir}, opset_import: [{', '.join(imports)}]>\n"


def build(
    graph: str,
    *,
    opset: int = DEFAULT_OPSET,
    domains: dict[str, int] | None = None,
    seed: int = 0,
    positive: Iterable[str] = (),
    check: bool = True,
) -> onnx.ModelProto:
    """A model from the text of one graph; declared-but-unvalued weights get random values.

    Float weights are standard normal (weights in `positive`: uniform in [0.5, 1.5], for
    variances and the like); integer weights are small non-negative integers.
    """
    model = onnx.parser.parse_model(header(opset, domains) + graph)
    rng = np.random.default_rng(seed)
    produced = {o for node in model.graph.node for o in node.output}
    produced |= {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    declared = [vi for vi in model.graph.value_info if vi.name not in produced]
    positive = set(positive)
    for vi in declared:
        model.graph.initializer.append(_random_tensor(vi, rng, vi.name in positive))
    kept = [vi for vi in model.graph.value_info if vi.name in produced]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def _random_tensor(vi: onnx.ValueInfoProto, rng: np.random.Generator, positive: bool) -> onnx.TensorProto:
    tensor_type = vi.type.tensor_type
    dims = [d.dim_value for d in tensor_type.shape.dim]
    if any(d.HasField("dim_param") or not d.HasField("dim_value") for d in tensor_type.shape.dim):
        raise ValueError(f"declared weight '{vi.name}' needs a static shape")
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    if dtype.kind == "f":
        values = rng.uniform(0.5, 1.5, dims) if positive else rng.standard_normal(dims)
    elif dtype.kind in "iu":
        values = rng.integers(0, 4, dims)
    elif dtype.kind == "b":
        values = rng.integers(0, 2, dims)
    else:
        raise ValueError(f"declared weight '{vi.name}' has an unsupported type {dtype}")
    return numpy_helper.from_array(np.asarray(values).astype(dtype), vi.name)


# ---------------------------------------------------------------------------------------------
# Questions about an analysis


def groups_with(analysis: DependencyAnalysis, key: str) -> list[Group]:
    """Every group (prunable or not) that has `key` ("tensor:axis") among its members."""
    return [g for g in analysis.groups if any(m.key == key for m in g.members)]


def describe(analysis: DependencyAnalysis) -> str:
    """Every group with its members and barriers, for assertion messages."""
    lines = []
    for g in analysis.groups:
        state = "prunable" if g.prunable else "pinned"
        members = ", ".join(f"{m.key}{'*' if m.is_weight else ''}" for m in g.members)
        lines.append(f"  group {g.id} ({state}, {g.size} units): {members}")
        lines.extend(f"    {b}" for b in g.barriers[:4])
    return "\n".join(lines) or "  (no groups)"


def has_barrier(groups: Iterable[Group], node: str, op_type: str) -> bool:
    return any(b.node == node and b.op_type == op_type for g in groups for b in g.barriers)


# ---------------------------------------------------------------------------------------------
# Questions about a pruned model


def node_named(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    found = [n for n in model.graph.node if n.name == name]
    assert len(found) == 1, f"expected one node named {name!r}, found {len(found)}"
    return found[0]


def attr(model: onnx.ModelProto, node: str, name: str):
    for a in node_named(model, node).attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def const_input(model: onnx.ModelProto, node: str, index: int) -> list:
    """The value of constant input `index` of the node named `node` in `model`, as a list."""
    name = node_named(model, node).input[index]
    inits = {t.name: t for t in model.graph.initializer}
    assert name in inits, f"input {index} ('{name}') of node {node} is not a constant"
    return numpy_helper.to_array(inits[name]).tolist()


def weight_shape(model: onnx.ModelProto, name: str) -> list[int]:
    found = [list(t.dims) for t in model.graph.initializer if t.name == name]
    assert found, f"no initializer named {name!r}"
    return found[0]


def rewrites_of(result: onnxprune.PruneResult) -> set[tuple[str, str]]:
    return {(r.node, r.what) for r in result.plan.rewrites}


def slice_of(result: onnxprune.PruneResult, key: str):
    tensor, axis = key.rsplit(":", 1)
    found = [s for s in result.plan.slices if s.tensor == tensor and s.axis == int(axis)]
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------
# Graph templates


def between_convs(
    body: str,
    *,
    weights: str = "",
    x: str = "1, 3, 8, 8",
    y: str = "1, 2, 8, 8",
    channels: int = 4,
    w2: str | None = None,
    tail: str = "[conv2] y = Conv (n, w2)",
    outputs: str = "",
) -> str:
    """The graph `x -> conv1 -> h -> (body) -> n -> conv2 -> y`: the op under test sits between
    a producer with `channels` output channels (weights w1, b1) and a consumer (weight w2).

    `body` reads `h` and writes `n`; `weights` declares its extra weights (", float[4] c").
    """
    w2 = w2 or f"float[2, {channels}, 1, 1] w2"
    return f"""g (float[{x}] x) => (float[{y}] y{outputs})
    <float[{channels}, 3, 3, 3] w1, float[{channels}] b1, {w2}{weights}> {{
    [conv1] h = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    {body}
    {tail}
}}"""


# ---------------------------------------------------------------------------------------------
# The case table

Check = Callable[[DependencyAnalysis, onnxprune.PruneResult, onnx.ModelProto], None]


@dataclass(frozen=True)
class Case:
    """One tiny graph and what the analyzer and the pruner must do with it.

    `prunable` maps weight axes ("w1:0") to the size of the prunable group that holds them.
    `pinned` maps weight axes no prunable group may hold to the (node name, op type) of a
    barrier that pins them (None: any reason will do). `groups` counts the prunable groups
    that can lose units (more than one unit). `rewrites` are (node, what) pairs the plan must
    list. `check(analysis, result, model)` adds case-specific assertions on the result at
    the first ratio (attributes of the pruned model, shapes). `runs=False` marks graphs ONNX
    Runtime cannot execute: only their analysis is checked. `note` is added to every failure
    message of the case.
    """

    id: str
    graph: str
    opset: int = DEFAULT_OPSET
    domains: dict[str, int] | None = None
    groups: int | None = None
    prunable: dict[str, int] = field(default_factory=dict)
    pinned: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    rewrites: tuple[tuple[str, str], ...] = ()
    ratios: tuple[float, ...] = (0.5,)
    exclude: str | None = None
    positive: tuple[str, ...] = ()
    check: Check | None = None
    runs: bool = True
    note: str = ""  # printed with every failure of the case (a known gap and where its fix belongs)

    def model(self) -> onnx.ModelProto:
        return build(self.graph, opset=self.opset, domains=self.domains, positive=self.positive)

    def op_types(self) -> set[tuple[str, str]]:
        """(domain, op type) of every node in the graph."""
        model = onnx.parser.parse_model(header(self.opset, self.domains) + self.graph)
        return {(n.domain, n.op_type) for n in model.graph.node}


def ids(cases: Iterable[Case]) -> list[str]:
    return [c.id for c in cases]


def runnable(cases: Iterable[Case]) -> list[Case]:
    return [c for c in cases if c.runs]


# ---------------------------------------------------------------------------------------------
# Case-specific checks: each builds a Check for `Case.check`


def then(*checks: Check) -> Check:
    """All of `checks`, in order."""

    def check(analysis, result, model):
        for c in checks:
            c(analysis, result, model)

    return check


def shapes(**expected: list[int]) -> Check:
    """Weights of the pruned model have these shapes."""

    def check(analysis, result, model):
        for name, shape in expected.items():
            assert weight_shape(result.model, name) == shape, name

    return check


def const_is(node: str, index: int, value: list) -> Check:
    """Constant input `index` of `node` in the pruned model holds `value`."""

    def check(analysis, result, model):
        assert const_input(result.model, node, index) == value, f"input {index} of {node}"

    return check


def attr_is(node: str, name: str, value) -> Check:
    """Attribute `name` of `node` in the pruned model is `value` (None: absent)."""

    def check(analysis, result, model):
        assert attr(result.model, node, name) == value, f"{node}.{name}"

    return check


def rewrite_is(node: str, what: str, before, after) -> Check:
    """The plan records exactly one rewrite of `node`: `what` from `before` to `after`."""

    def check(analysis, result, model):
        records = [(r.what, r.before, r.after) for r in result.plan.rewrites if r.node == node]
        assert records == [(what, before, after)], result.plan.rewrites

    return check


def no_rewrites(analysis, result, model) -> None:
    assert not result.plan.rewrites, result.plan.rewrites


def unit_width(key: str, width: int) -> Check:
    """Each unit of the prunable group holding `key` spans `width` positions of that axis."""

    def check(analysis, result, model):
        (group,) = [g for g in groups_with(analysis, key) if g.prunable]
        (member,) = [m for m in group.members if m.key == key]
        assert member.positions.shape == (group.size, width), member.positions.shape

    return check


def one_group_holds(*keys: str) -> Check:
    """The weight axes `keys` are all in one prunable group (coupled)."""

    def check(analysis, result, model):
        holders = {g.id for key in keys for g in groups_with(analysis, key) if g.prunable}
        assert len(holders) == 1, f"{keys} should share one group, found groups {holders}"

    return check


def check_structure(case: Case) -> DependencyAnalysis:
    """What `onnxprune.analyze` finds must match the case's groups, members and barriers."""
    with _noted(case):
        return _check_structure(case)


def check_pruning(case: Case) -> None:
    """At every ratio of the case, the pruned model validates and is as small as it should be."""
    with _noted(case):
        _check_pruning(case)


@contextmanager
def _noted(case: Case) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        if not case.note:
            raise
        raise AssertionError(f"{exc}\n\n{case.id}: {case.note}") from None


def _check_structure(case: Case) -> DependencyAnalysis:
    model = case.model()
    analysis = onnxprune.analyze(model, exclude=case.exclude)
    table = describe(analysis)
    if case.groups is not None:
        found = [g for g in analysis.prunable_groups if g.size > 1]
        assert len(found) == case.groups, (
            f"expected {case.groups} prunable groups of more than one unit, found {len(found)}:\n{table}"
        )
    for key, size in case.prunable.items():
        sizes = [g.size for g in groups_with(analysis, key) if g.prunable]
        assert size in sizes, f"{key} should be in a prunable group of {size} units:\n{table}"
    for key, barrier in case.pinned.items():
        holders = groups_with(analysis, key)
        assert not any(g.prunable for g in holders), f"{key} should be pinned:\n{table}"
        if barrier is not None:
            node, op = barrier
            assert has_barrier(holders, node, op), (
                f"{key} should be pinned by node '{node}' ({op}):\n{table}\n  all barriers: "
                + "; ".join(str(b) for b in analysis.barriers)
            )
    return analysis


def _check_pruning(case: Case) -> None:
    model = case.model()
    analysis = onnxprune.analyze(model, exclude=case.exclude)
    for k, ratio in enumerate(case.ratios):
        result = onnxprune.prune(model, ratio=ratio, exclude=case.exclude)
        report = onnxprune.validate(model, result.model, result.plan)
        assert report, f"ratio {ratio}:\n{report}"
        before, after = count_params(model), count_params(result.model)
        if case.prunable:
            assert after < before, f"ratio {ratio}: nothing was removed ({before} parameters)"
            for key in case.prunable:
                s = slice_of(result, key)
                assert s is not None and len(s.keep) < s.size, f"{key} was not sliced: {result.plan.slices}"
        if case.groups == 0:
            assert after == before and not result.plan.removes_anything, result.plan.slices
        for key in case.pinned:
            s = slice_of(result, key)
            assert s is None or len(s.keep) == s.size, f"pinned {key} was sliced: {s}"
        missing = set(case.rewrites) - rewrites_of(result)
        assert not missing, f"rewrites {sorted(missing)} missing from the plan: {result.plan.rewrites}"
        if k == 0 and case.check is not None:
            case.check(analysis, result, model)
