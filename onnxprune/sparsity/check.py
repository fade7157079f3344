"""Validation of weight sparsity: each tensor the plan's `updates` lists as sparsified (`by`
"sparsity" or "sparsity-N:M") must be the structural tensor (the original taken at the plan's
slices) with some entries set to zero and nothing else changed, and hold its N:M pattern in every
group of M along the reduction axis. `with_zeros_of` gives the original the same zeroed entries,
so a sparsified model is checked for parity without a structural model.

>>> import onnx
>>> from onnxprune.plan import Plan, TensorUpdate
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 4] x) => (float[1, 1] y) <float[4, 1] w = {1, 2, 3, 4}> { y = MatMul(x, w) }''')
>>> s = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 4] x) => (float[1, 1] y) <float[4, 1] w = {0, 2, 0, 4}> { y = MatMul(x, w) }''')
>>> sparsity_problems(m, s, Plan(updates=(TensorUpdate("w", (4, 1), "sparsity-2:4"),)))
[]
>>> sparsity_problems(m, s, Plan(updates=(TensorUpdate("w", (4, 1), "sparsity-1:4"),)))
['w: 1 of 1 groups of 4 along axis 0 hold more than 1 non-zeros (sparsity-1:4)']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.plan import Plan, TensorUpdate
from onnxprune.sparsity.api import SPARSITY_BY, nm_of, only_sparsity
from onnxprune.sparsity.layout import SparseTarget, nm_violations, sparsity_targets
from onnxprune.weights import set_weight, weight_tensors


def _structural_value(original: onnx.TensorProto, plan: Plan, name: str) -> np.ndarray:
    """The original tensor taken at the plan's kept indices, every slice of it in turn."""
    value = numpy_helper.to_array(original)
    for s in plan.slices:
        if s.tensor == name:
            value = np.take(value, np.asarray(s.keep, dtype=np.int64), axis=s.axis)
    return value


def _zeroed_only(name: str, expected: np.ndarray, got: np.ndarray, by: str) -> str | None:
    """The problem when `got` is not `expected` with some entries set to zero."""
    if expected.shape != got.shape or expected.dtype != got.dtype:
        return (
            f"{name}: {got.dtype}{list(got.shape)}, the structural tensor is "
            f"{expected.dtype}{list(expected.shape)}"
        )
    changed = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    if np.any(changed & (got != 0)):
        count = int(np.count_nonzero(changed & (got != 0)))
        return f"{name}: {count} entries changed to values other than zero ({by} only zeroes entries)"
    return None


def _pattern_problem(
    update: TensorUpdate, got: np.ndarray, targets: Mapping[str, SparseTarget]
) -> str | None:
    """The problem when an N:M update does not hold its pattern along its reduction axis."""
    nm = nm_of(update.by)
    if nm is None:
        return None
    target = targets.get(update.tensor)
    if target is None:
        return f"{update.tensor}: {update.by}, but no Conv, Gemm or MatMul reads it as a weight"
    bad = nm_violations(got, target.axis, *nm)
    if bad is None:
        shape = list(got.shape)
        return f"{update.tensor}: axis {target.axis} of {shape} is not a multiple of {nm[1]} ({update.by})"
    if bad:
        groups = got.size // nm[1]
        return (
            f"{update.tensor}: {bad} of {groups} groups of {nm[1]} along axis {target.axis} hold more than "
            f"{nm[0]} non-zeros ({update.by})"
        )
    return None


def sparsity_problems(original: onnx.ModelProto, pruned: onnx.ModelProto, plan: Plan) -> list[str]:
    """Problems with the sparsified tensors of `pruned` (dense initializers: see
    `storage.densified`). A tensor whose `by` names only sparsity must be the structural value
    with some entries zeroed; one whose `by` also names another pass is checked for its pattern
    only."""
    before, after = weight_tensors(original), weight_tensors(pruned)
    targets = sparsity_targets(pruned) if any(nm_of(u.by) for u in plan.updates) else {}
    problems = []
    for u in plan.updates:
        sparsified = any(part.startswith(SPARSITY_BY) for part in u.by.split("+"))
        if not sparsified or u.tensor not in after:
            continue  # not sparsity, or missing (the update-shape check names it)
        got = numpy_helper.to_array(after[u.tensor])
        problem = _pattern_problem(u, got, targets)
        if problem is None and only_sparsity(u.by):
            if u.tensor not in before:
                problem = f"{u.tensor}: {u.by}, but it is not a weight of the original model"
            else:
                problem = _zeroed_only(
                    u.tensor, _structural_value(before[u.tensor], plan, u.tensor), got, u.by
                )
        if problem:
            problems.append(problem)
    return problems


def sparsity_only(plan: Plan) -> bool:
    """True when the plan has updates and every one is weight sparsity alone."""
    return bool(plan.updates) and all(only_sparsity(u.by) for u in plan.updates)


def with_zeros_of(original: onnx.ModelProto, pruned: onnx.ModelProto, plan: Plan) -> onnx.ModelProto:
    """A copy of `original` whose sparsified tensors are zero where the pruned ones are (through
    the plan's slices: a kept position of the pruned tensor maps back to its original index)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(original)
    before, after = weight_tensors(original), weight_tensors(pruned)
    for u in plan.updates:
        if not only_sparsity(u.by) or u.tensor not in before or u.tensor not in after:
            continue
        value = np.array(numpy_helper.to_array(before[u.tensor]))
        keeps = [np.arange(n) for n in value.shape]
        for s in plan.slices:
            if s.tensor == u.tensor:
                keeps[s.axis % value.ndim] = np.asarray(s.keep, dtype=np.int64)
        got = numpy_helper.to_array(after[u.tensor])
        index = np.ix_(*keeps)
        if got.shape != value[index].shape:
            continue  # a shape problem, reported by the slice checks
        value[index] = np.where(got == 0, np.zeros((), value.dtype), value[index])
        set_weight(copy, u.tensor, value)
    return copy
