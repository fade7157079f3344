"""Weight checks of a pruned model against the original and the plan (shared/DESIGN.md, "The plan").

Every tensor the plan slices must be the original taken at the plan's kept indices, exactly,
unless the plan lists it in `updates` (a pass changed its values after slicing, e.g.
compensation): then its shape and element type are checked, not its values. Every other float
weight present in both models must keep its shape and its values unless it is listed in
`updates`; integer tensors (shape and index constants) are the plan's `rewrites` and are not
compared here.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[1, 3] x) => (float[1, 3] y) <float[3] b = {1, 2, 3}> { y = Add(x, b) }''')
>>> check_slices(m, m, Plan())
[]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.plan import Plan, TensorSlice, TensorUpdate
from onnxprune.sparsity.check import sparsity_problems
from onnxprune.weights import weight_tensors

_FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
)


def slice_axis(s: TensorSlice, rank: int) -> int | None:
    """The slice's axis as a non-negative index, or None if it is out of range for `rank`."""
    axis = s.axis + rank if s.axis < 0 else s.axis
    return axis if 0 <= axis < rank else None


def plan_problems(weights: Mapping[str, onnx.TensorProto], plan: Plan) -> dict[str, str]:
    """For each plan tensor that does not fit `weights`, the first reason why (tensor -> message)."""
    problems: dict[str, str] = {}
    seen: set[tuple[str, int]] = set()
    for s in plan.slices:
        if s.tensor in problems:
            continue
        tensor = weights.get(s.tensor)
        if tensor is None:
            problems[s.tensor] = (
                f"{s.tensor}: the plan slices it, but it is not a weight of the original model"
            )
            continue
        dims = list(tensor.dims)
        axis = slice_axis(s, len(dims))
        if axis is None:
            problems[s.tensor] = f"{s.tensor}: plan axis {s.axis} is out of range for shape {dims}"
        elif dims[axis] != s.size:
            problems[s.tensor] = f"{s.tensor}: plan size {s.size} != axis {s.axis} size {dims[axis]} ({dims})"
        elif (s.tensor, axis) in seen:
            problems[s.tensor] = f"{s.tensor}: two plan slices of axis {s.axis}"
        elif list(s.keep) != sorted(set(s.keep)) or any(not 0 <= i < s.size for i in s.keep):
            problems[s.tensor] = (
                f"{s.tensor}: keep of axis {s.axis} is not sorted unique indices in [0, {s.size})"
            )
        seen.add((s.tensor, axis if axis is not None else s.axis))
    return problems


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (so NaNs match NaNs and -0.0 differs from 0.0)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(
        np.array_equal(
            np.ascontiguousarray(a).reshape(-1).view(np.uint8),
            np.ascontiguousarray(b).reshape(-1).view(np.uint8),
        )
    )


def _type_name(tensor: onnx.TensorProto) -> str:
    return onnx.TensorProto.DataType.Name(tensor.data_type)


def _sliced_shape(source: onnx.TensorProto, slices: list[TensorSlice]) -> list[int]:
    shape = list(source.dims)
    for s in slices:
        axis = slice_axis(s, len(shape))
        if axis is not None:  # always: plans that do not fit are reported first
            shape[axis] = len(s.keep)
    return shape


def _check_planned(
    name: str,
    source: onnx.TensorProto,
    result: onnx.TensorProto | None,
    slices: list[TensorSlice],
    update: TensorUpdate | None,
) -> str | None:
    """The problem with one sliced tensor of the pruned model, or None."""
    if result is None:
        return f"{name}: the plan slices it, but the pruned model has no weight of that name"
    expected_shape = _sliced_shape(source, slices)
    if result.data_type != source.data_type:
        return f"{name}: element type changed from {_type_name(source)} to {_type_name(result)}"
    if list(result.dims) != expected_shape:
        return (
            f"{name}: pruned shape {list(result.dims)}, but the plan's slices of {list(source.dims)} "
            f"give {expected_shape}"
        )
    if update is not None:
        return None  # values changed on purpose after slicing: shape and type are all there is to check
    expected = numpy_helper.to_array(source)
    for s in slices:
        expected = np.take(expected, np.asarray(s.keep, dtype=np.int64), axis=s.axis)
    if not _bitwise_equal(expected, numpy_helper.to_array(result)):
        axes = ", ".join(f"axis {s.axis} keep {list(s.keep)}" for s in slices)
        return f"{name}: pruned values are not the original taken at the plan's indices ({axes})"
    return None


def _check_update_shapes(
    plan: Plan, original: Mapping[str, onnx.TensorProto], pruned: Mapping[str, onnx.TensorProto]
) -> list[str]:
    """Each listed update must name a weight of the pruned model with the listed shape."""
    problems = []
    for u in plan.updates:
        result = pruned.get(u.tensor)
        if result is None:
            problems.append(
                f"{u.tensor}: listed in updates (by {u.by}), but the pruned model has no such weight"
            )
        elif list(result.dims) != list(u.shape):
            problems.append(
                f"{u.tensor}: shape {list(result.dims)} in the pruned model, "
                f"updates (by {u.by}) says {list(u.shape)}"
            )
        elif u.tensor in original and original[u.tensor].data_type != result.data_type:
            before = _type_name(original[u.tensor])
            problems.append(f"{u.tensor}: element type changed from {before} to {_type_name(result)}")
    return problems


def _check_unplanned(
    name: str, before: onnx.TensorProto, after: onnx.TensorProto, updated: bool
) -> str | None:
    """A weight the plan does not slice: same shape; same values unless listed in updates."""
    if list(before.dims) != list(after.dims):
        return f"{name}: shape changed from {list(before.dims)} to {list(after.dims)} without a plan slice"
    if updated or before.data_type not in _FLOAT_TYPES:
        return None
    if before.data_type != after.data_type:
        return f"{name}: element type changed from {_type_name(before)} to {_type_name(after)}"
    if before.raw_data and after.raw_data and before.raw_data == after.raw_data:
        return None  # the common case, without decoding
    try:
        same = _bitwise_equal(numpy_helper.to_array(before), numpy_helper.to_array(after))
    except Exception:  # external data not loaded: nothing to compare in memory
        return None
    if same:
        return None
    return f"{name}: values changed, but the plan neither slices it nor lists it in updates"


def check_slices(original: onnx.ModelProto, pruned: onnx.ModelProto, plan: Plan) -> list[str]:
    """Problems with the pruned weights: an empty list means the plan describes them exactly.

    Each planned tensor of `pruned` must equal the original taken at `keep` along `axis`, for
    every slice of that tensor in turn, or, when the plan lists it in `updates`, have that
    shape and element type. A weight present in both models may change shape only through a
    plan slice, and a float weight may change values only if `updates` lists it. Each update
    must name a weight of `pruned` of the listed shape. A tensor updated by weight sparsity alone
    must be its sliced original with some entries zeroed, and hold its N:M pattern
    (`onnxprune.sparsity.check`).

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 3] x) => (float[1, 3] y) <float[3] b = {1, 2, 3}> { y = Add(x, b) }''')
    >>> m2 = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 3] x) => (float[1, 3] y) <float[3] b = {1, 2, 4}> { y = Add(x, b) }''')
    >>> check_slices(m, m2, Plan())
    ['b: values changed, but the plan neither slices it nor lists it in updates']
    >>> check_slices(m, m2, Plan(updates=(TensorUpdate("b", (3,), "compensate-bias"),)))
    []
    """
    original_weights = weight_tensors(original)
    pruned_weights = weight_tensors(pruned)
    bad = plan_problems(original_weights, plan)
    problems = list(bad.values())
    updates = {u.tensor: u for u in plan.updates}
    planned: dict[str, list[TensorSlice]] = defaultdict(list)
    for s in plan.slices:
        planned[s.tensor].append(s)
    for name in sorted(set(planned) - set(bad)):
        problem = _check_planned(
            name, original_weights[name], pruned_weights.get(name), planned[name], updates.get(name)
        )
        if problem:
            problems.append(problem)
    problems.extend(_check_update_shapes(plan, original_weights, pruned_weights))
    for name in sorted((original_weights.keys() & pruned_weights.keys()) - set(planned)):
        problem = _check_unplanned(name, original_weights[name], pruned_weights[name], name in updates)
        if problem:
            problems.append(problem)
    problems.extend(sparsity_problems(original, pruned, plan))
    return problems
