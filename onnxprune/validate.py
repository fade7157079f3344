"""Validation of a pruned model against its original and the plan (shared/DESIGN.md, "Parity").

The pruned model cannot compute what the original computes; it must compute what the original
computes with the removed channels masked: every removed index of every ``role: "in"`` slice set to
zero. `check_parity` runs both under ONNX Runtime on the same random inputs; `check_slices` checks
that every pruned tensor is exactly the original taken at the plan's kept indices; `validate` adds
onnx.checker, an ONNX Runtime load and run, and the graph's input and output shapes.

>>> report = validate("model.onnx", "pruned.onnx", Plan.load("plan.json"))  # doctest: +SKIP
>>> bool(report), report.parity.outputs[0].rel_err < 1e-4  # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from onnxprune.errors import ModelError, PlanError, UsageError
from onnxprune.io import ModelLike, load_model
from onnxprune.metrics import check_input_names, concrete_shape, graph_inputs, tensor_dims
from onnxprune.plan import Plan, TensorSlice
from onnxprune.weights import get_weight, set_weight, weight_tensors

# Random integer inputs are drawn from [0, FEED_INT_HIGH): small enough to be valid indices,
# token ids or counts in almost any model.
FEED_INT_HIGH = 4

# Half-precision outputs round at about 1e-3 relative, so masked and pruned models that sum in a
# different order cannot agree to 1e-4; their outputs are compared at no less than this.
HALF_PRECISION_TOLERANCE = 1e-2

_FLOAT_FEEDS = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}
_INT_FEEDS = {
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
}


def _index_bound(model: onnx.ModelProto, name: str) -> int:
    """Largest valid index + 1 when input `name` indexes constant tables (token type ids into a
    two-row embedding), so random ids stay in range; FEED_INT_HIGH otherwise."""
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    bound = FEED_INT_HIGH
    for node in model.graph.node:
        if (
            node.op_type == "Gather"
            and len(node.input) > 1
            and node.input[1] == name
            and node.input[0] in tables
        ):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = tables[node.input[0]]
            if dims:
                bound = min(bound, max(1, dims[axis % len(dims)]))
    return bound


def make_feeds(
    model: onnx.ModelProto,
    *,
    seed: int,
    input_shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
) -> dict[str, np.ndarray]:
    """Random inputs for every graph input of `model`, reproducible from `seed`.

    Float inputs are standard normal in the input's dtype (float32/16/64), integer inputs small
    non-negative integers (below FEED_INT_HIGH), bool inputs ones. A dynamic dim 0 is `batch`;
    any other dynamic dim must be given in `input_shapes` (full shapes by input name) or
    UsageError (a ValueError) names the input and the dim: spatial and sequence sizes are never
    guessed. ModelError if an input is not a tensor of one of those types.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }''')
    >>> make_feeds(m, seed=0, input_shapes={"x": [1, 3, 8, 8]}, batch=2)["x"].shape
    (2, 3, 8, 8)
    """
    check_input_names(model, input_shapes)
    given = input_shapes or {}
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for info in graph_inputs(model):
        name = info.name
        if not info.type.HasField("tensor_type"):
            raise ModelError(f"graph input '{name}' is not a tensor; cannot make a random feed for it")
        shape = concrete_shape(name, tensor_dims(info), given.get(name), batch=batch, dynamic_default=None)
        elem = info.type.tensor_type.elem_type
        if elem in _FLOAT_FEEDS:
            feeds[name] = rng.standard_normal(shape).astype(_FLOAT_FEEDS[elem])
        elif elem in _INT_FEEDS:
            high = min(FEED_INT_HIGH, _index_bound(model, name))
            feeds[name] = rng.integers(0, high, size=shape).astype(_INT_FEEDS[elem])
        elif elem == onnx.TensorProto.BOOL:
            feeds[name] = np.ones(shape, dtype=np.bool_)
        else:
            type_name = onnx.TensorProto.DataType.Name(elem)
            raise ModelError(f"graph input '{name}' has element type {type_name}; cannot make a random feed")
    return feeds


def ort_session(
    model_or_bytes: onnx.ModelProto | bytes | str | os.PathLike, threads: int = 2
) -> ort.InferenceSession:
    """An ONNX Runtime InferenceSession on the CPU provider (warnings silenced, `threads` intra-op).

    A ModelProto is serialized to bytes in memory, never written to a temporary file.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) { y = Relu(x) }''')
    >>> [o.name for o in ort_session(m).get_outputs()]
    ['y']
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if isinstance(model_or_bytes, onnx.ModelProto):
        source: bytes | str = model_or_bytes.SerializeToString()
    elif isinstance(model_or_bytes, bytes | bytearray):
        source = bytes(model_or_bytes)
    else:
        source = os.fspath(model_or_bytes)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _axis(s: TensorSlice, rank: int) -> int | None:
    """The slice's axis as a non-negative index, or None if it is out of range for `rank`."""
    axis = s.axis + rank if s.axis < 0 else s.axis
    return axis if 0 <= axis < rank else None


def _plan_problems(weights: Mapping[str, onnx.TensorProto], plan: Plan) -> dict[str, str]:
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
        axis = _axis(s, len(dims))
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


def masked_model(original: onnx.ModelProto, plan: Plan) -> onnx.ModelProto:
    """A copy of `original` with every removed index of every ``role: "in"`` slice set to zero.

    The original is not modified. Raises PlanError if a slice names a tensor that is not a weight
    of `original`, or whose axis size is not the slice's `size`.

    >>> import numpy as np, onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 3] x) => (float[1, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}> { y = MatMul(x, w) }''')
    >>> plan = Plan(slices=(TensorSlice("w", axis=0, size=3, keep=(0, 2), role="in"),))
    >>> get_weight(masked_model(m, plan), "w").tolist()
    [[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]
    """
    problems = _plan_problems(weight_tensors(original), plan)
    if problems:
        raise PlanError("plan does not fit the model: " + "; ".join(problems.values()))
    masked = onnx.ModelProto()
    masked.CopyFrom(original)
    zeroed: dict[str, np.ndarray] = {}
    for s in plan.slices:
        if s.role != "in" or len(s.keep) == s.size:
            continue
        array = zeroed.get(s.tensor)
        if array is None:
            array = np.array(get_weight(masked, s.tensor))  # a writable copy
            zeroed[s.tensor] = array
        axis = _axis(s, array.ndim)
        if axis is None:  # never: _plan_problems checked every axis
            continue
        index: list[Any] = [slice(None)] * array.ndim
        index[axis] = np.setdiff1d(np.arange(s.size), np.asarray(s.keep, dtype=np.int64))
        array[tuple(index)] = 0
    for name, array in zeroed.items():
        set_weight(masked, name, array)
    return masked


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


def check_slices(original: onnx.ModelProto, pruned: onnx.ModelProto, plan: Plan) -> list[str]:
    """Problems with the pruned weights: an empty list means the plan describes them exactly.

    Each planned tensor of `pruned` must equal the original taken at `keep` along `axis`, for
    every slice of that tensor in turn; a weight present in both models may change shape only
    through a plan slice.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 3] x) => (float[1, 3] y) <float[3] b = {1, 2, 3}> { y = Add(x, b) }''')
    >>> check_slices(m, m, Plan())
    []
    """
    original_weights = weight_tensors(original)
    pruned_weights = weight_tensors(pruned)
    bad = _plan_problems(original_weights, plan)
    problems = list(bad.values())
    planned: dict[str, list[TensorSlice]] = defaultdict(list)
    for s in plan.slices:
        planned[s.tensor].append(s)
    for name in sorted(set(planned) - set(bad)):
        source = original_weights[name]
        result = pruned_weights.get(name)
        if result is None:
            problems.append(f"{name}: the plan slices it, but the pruned model has no weight of that name")
            continue
        expected_shape = list(source.dims)
        for s in planned[name]:
            axis = _axis(s, len(expected_shape))
            if axis is not None:  # always: plans that do not fit were reported above
                expected_shape[axis] = len(s.keep)
        if result.data_type != source.data_type:
            problems.append(
                f"{name}: element type changed from {onnx.TensorProto.DataType.Name(source.data_type)} "
                f"to {onnx.TensorProto.DataType.Name(result.data_type)}"
            )
            continue
        if list(result.dims) != expected_shape:
            problems.append(
                f"{name}: pruned shape {list(result.dims)}, but the plan's slices of {list(source.dims)} "
                f"give {expected_shape}"
            )
            continue
        expected = numpy_helper.to_array(source)
        for s in planned[name]:
            expected = np.take(expected, np.asarray(s.keep, dtype=np.int64), axis=s.axis)
        if not _bitwise_equal(expected, numpy_helper.to_array(result)):
            axes = ", ".join(f"axis {s.axis} keep {list(s.keep)}" for s in planned[name])
            problems.append(
                f"{name}: pruned values are not the original taken at the plan's indices ({axes})"
            )
    for name in sorted((original_weights.keys() & pruned_weights.keys()) - set(planned)):
        before, after = list(original_weights[name].dims), list(pruned_weights[name].dims)
        if before != after:
            problems.append(f"{name}: shape changed from {before} to {after} without a plan slice")
    return problems


@dataclass
class OutputDiff:
    """How one output of the pruned model compares with the masked original (worst feed).

    `rel_err` is the max abs difference over max(1e-6, max abs of the reference); `tolerance` is
    the relative tolerance applied (None: compared exactly, for non-float outputs); `detail`
    says why no tolerance can pass (shape or dtype mismatch).

    >>> str(OutputDiff("y", (1, 4), 2e-7, 1e-7, ok=True, tolerance=1e-4))
    "ok   output 'y' (1, 4): max abs 2e-07, rel err 1e-07 (tolerance 0.0001; passes at >= 1e-07)"
    """

    name: str
    shape: tuple
    max_abs: float
    rel_err: float
    ok: bool = True
    tolerance: float | None = None
    detail: str | None = None

    def __str__(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        head = f"{status} output '{self.name}' {self.shape}"
        if self.detail:
            return f"{head}: {self.detail}"
        figures = f"max abs {self.max_abs:.3g}, rel err {self.rel_err:.3g}"
        if self.tolerance is None:
            return f"{head}: {figures} (non-float output, compared exactly)"
        return f"{head}: {figures} (tolerance {self.tolerance:g}; passes at >= {self.rel_err:.3g})"


@dataclass
class ParityReport:
    """Mask-equivalence of the pruned model: true when every output agreed on every feed.

    >>> r = ParityReport(ok=False, tolerance=1e-4, outputs=[OutputDiff("y", (1,), 0.5, 0.25, ok=False,
    ...                  tolerance=1e-4)], feeds_tried=3)
    >>> bool(r), "'y'" in str(r)
    (False, True)
    """

    ok: bool
    tolerance: float
    outputs: list[OutputDiff]
    feeds_tried: int
    error: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        status = "ok" if self.ok else "FAILED"
        lines = [
            f"parity {status}: pruned vs masked original on {self.feeds_tried} random feeds, "
            f"relative tolerance {self.tolerance:g}"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.extend(f"  {diff}" for diff in self.outputs)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (dataclasses.asdict); infinite errors become None (strict JSON)."""
        return _finite(dataclasses.asdict(self))


ABSOLUTE_FLOOR = 1e-6
"""Differences up to this absolute size pass parity whatever the output's scale (float32 rounding
of order-1 intermediate values; see tests/test_property_regressions.py)."""


def _compare(name: str, reference: Any, result: Any, tolerance: float) -> OutputDiff:
    """Compare one output of one feed: shapes exactly, floats by relative error, the rest exactly."""
    if not isinstance(reference, np.ndarray) or not isinstance(result, np.ndarray):
        # sequence or map outputs: equal element by element, or not at all
        equal = _deep_equal(reference, result)
        return OutputDiff(
            name,
            (),
            0.0 if equal else math.inf,
            0.0 if equal else math.inf,
            ok=equal,
            detail=None if equal else "non-tensor output differs",
        )
    ref, got = reference, result
    if ref.shape != got.shape:
        return OutputDiff(
            name,
            tuple(got.shape),
            math.inf,
            math.inf,
            ok=False,
            detail=f"shape {got.shape}, expected {ref.shape}",
        )
    if ref.dtype != got.dtype:
        return OutputDiff(
            name,
            tuple(got.shape),
            math.inf,
            math.inf,
            ok=False,
            detail=f"dtype {got.dtype}, expected {ref.dtype}",
        )
    if ref.dtype.kind == "f":
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        diff = np.abs(ref64 - got64)
        diff[(ref64 == got64) | (np.isnan(ref64) & np.isnan(got64))] = 0.0  # equal infs, NaN for NaN
        diff[np.isnan(diff)] = np.inf
        max_abs = float(diff.max()) if diff.size else 0.0
        finite = np.abs(ref64[np.isfinite(ref64)])
        rel_err = max_abs / max(1e-6, float(finite.max()) if finite.size else 0.0)
        tol = max(tolerance, HALF_PRECISION_TOLERANCE) if ref.dtype == np.float16 else tolerance
        # an absolute floor: outputs that are nearly all zero (a Relu cutting off order-1 values)
        # differ by float rounding of the terms that made them, not by their own size
        ok = max_abs <= tol * (float(finite.max()) if finite.size else 0.0) + ABSOLUTE_FLOOR
        return OutputDiff(name, tuple(ref.shape), max_abs, rel_err, ok=ok, tolerance=tol)
    equal = bool(np.array_equal(ref, got))
    if ref.dtype.kind in "biu":
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        max_abs = float(np.abs(ref64 - got64).max()) if ref.size else 0.0
        scale = float(np.abs(ref64).max()) if ref.size else 0.0
    else:
        max_abs, scale = (0.0 if equal else math.inf), 1.0
    return OutputDiff(name, tuple(ref.shape), max_abs, max_abs / max(1e-6, scale), ok=equal)


def _deep_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _worse(current: OutputDiff | None, new: OutputDiff) -> OutputDiff:
    """Keep the first failure, else the largest relative error."""
    if current is None:
        return new
    if current.ok != new.ok:
        return current if not current.ok else new
    return new if new.rel_err > current.rel_err else current


def _has_dynamic_batch(model: onnx.ModelProto) -> bool:
    for info in graph_inputs(model):
        dims = tensor_dims(info)
        if dims is None or (dims and dims[0] is None):
            return True
    return False


def _run_parity(
    original: onnx.ModelProto,
    reference: ort.InferenceSession,
    pruned: ort.InferenceSession,
    *,
    tolerance: float,
    seeds: Sequence[int],
    input_shapes: dict[str, list[int]] | None,
    batches: Sequence[int],
) -> ParityReport:
    """Run two loaded sessions (masked original, pruned) on the same feeds and compare outputs."""
    names = [o.name for o in reference.get_outputs()]
    pruned_names = [o.name for o in pruned.get_outputs()]
    if names != pruned_names:
        return ParityReport(
            False, tolerance, [], 0, error=f"pruned outputs {pruned_names} != original's {names}"
        )
    used_batches = list(batches) if _has_dynamic_batch(original) else list(batches)[:1]
    worst: dict[str, OutputDiff | None] = dict.fromkeys(names)
    tried = 0
    error = None
    for batch in used_batches:
        for seed in seeds:
            where = f"seed {seed}, batch {batch}"
            try:
                feeds = make_feeds(original, seed=seed, input_shapes=input_shapes, batch=batch)
            except ModelError as exc:
                error = str(exc)
                break
            try:
                expected = reference.run(None, feeds)
            except Exception as exc:
                error = f"the masked original failed to run ({where}): {exc}"
                break
            try:
                results = pruned.run(None, feeds)
            except Exception as exc:
                error = f"the pruned model failed to run ({where}): {exc}"
                break
            tried += 1
            for name, ref, got in zip(names, expected, results, strict=True):
                worst[name] = _worse(worst[name], _compare(name, ref, got, tolerance))
        if error:
            break
    outputs = [diff for diff in worst.values() if diff is not None]
    ok = error is None and tried > 0 and all(diff.ok for diff in outputs)
    return ParityReport(ok, tolerance, outputs, tried, error)


def _as_model(model: ModelLike) -> onnx.ModelProto:
    """A ModelProto as it is (never modified here), or one loaded from a path or bytes."""
    return model if isinstance(model, onnx.ModelProto) else load_model(model)[0]


def _as_plan(plan: Plan | str | os.PathLike) -> Plan:
    return plan if isinstance(plan, Plan) else Plan.load(plan)


def _masked_session(
    original: onnx.ModelProto, plan: Plan, tolerance: float
) -> ort.InferenceSession | ParityReport:
    """A session of the masked original (the masked copy is dropped once loaded), or a failed report."""
    try:
        return ort_session(masked_model(original, plan).SerializeToString())
    except PlanError as exc:
        return ParityReport(False, tolerance, [], 0, error=str(exc))
    except Exception as exc:
        return ParityReport(False, tolerance, [], 0, error=f"the masked original does not load: {exc}")


def check_parity(
    original: ModelLike,
    pruned: ModelLike,
    plan: Plan | str | os.PathLike,
    *,
    tolerance: float = 1e-4,
    seeds: Sequence[int] = (0, 1, 2),
    input_shapes: dict[str, list[int]] | None = None,
    batches: Sequence[int] = (1, 2),
) -> ParityReport:
    """Run the masked original and the pruned model on the same random feeds; compare all outputs.

    One feed per seed, at every batch size in `batches` if some input has a dynamic dim 0 (else
    at the first only). Output shapes must match exactly, float outputs to relative error
    `tolerance` (at least HALF_PRECISION_TOLERANCE for float16 outputs), other outputs exactly.
    A plan that does not fit the original, or a model that does not load or run, gives a false
    report with `error` set; missing `input_shapes` for dynamic dims raise UsageError.

    >>> report = check_parity("model.onnx", "pruned.onnx", "plan.json")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    parity ok: pruned vs masked original on 6 random feeds, relative tolerance 0.0001
      ok   output 'y' (2, 10): max abs 3.1e-07, rel err 8.2e-08 (tolerance 0.0001; passes at >= 8.2e-08)
    """
    original_model, pruned_model, the_plan = _as_model(original), _as_model(pruned), _as_plan(plan)
    check_input_names(original_model, input_shapes)
    reference = _masked_session(original_model, the_plan, tolerance)
    if isinstance(reference, ParityReport):
        return reference
    try:
        session = ort_session(pruned_model)
    except Exception as exc:
        return ParityReport(False, tolerance, [], 0, error=f"the pruned model does not load: {exc}")
    return _run_parity(
        original_model,
        reference,
        session,
        tolerance=tolerance,
        seeds=seeds,
        input_shapes=input_shapes,
        batches=batches,
    )


def _io_shape_problems(original: onnx.ModelProto, pruned: onnx.ModelProto) -> list[str]:
    """Graph inputs and outputs of `pruned` must be those of `original`, with its static dims."""
    problems = []
    pairs = (
        ("input", graph_inputs(original), graph_inputs(pruned)),
        ("output", list(original.graph.output), list(pruned.graph.output)),
    )
    for kind, before, after in pairs:
        if [i.name for i in before] != [i.name for i in after]:
            problems.append(
                f"graph {kind}s are {[i.name for i in after]}, the original's {[i.name for i in before]}"
            )
        by_name = {info.name: info for info in after}
        for info in before:
            other = by_name.get(info.name)
            if other is None:
                continue
            if info.type.tensor_type.elem_type != other.type.tensor_type.elem_type:
                problems.append(f"graph {kind} '{info.name}' changed element type")
            dims, new_dims = tensor_dims(info), tensor_dims(other)
            if dims is None:
                continue
            if new_dims is None or len(new_dims) != len(dims):
                problems.append(f"graph {kind} '{info.name}' has shape {new_dims}, the original {dims}")
                continue
            changed = [axis for axis, d in enumerate(dims) if d is not None and new_dims[axis] != d]
            if changed:
                problems.append(
                    f"graph {kind} '{info.name}' has shape {new_dims}, the original {dims} (dims {changed})"
                )
    return problems


@dataclass
class ValidationReport:
    """Every check of `validate`; true only when all of them hold.

    >>> r = ValidationReport(True, None, True, None, True, [], None)
    >>> bool(r), r.to_json()["parity"]
    (False, None)
    """

    checker_ok: bool
    checker_error: str | None
    runtime_ok: bool
    runtime_error: str | None
    shapes_ok: bool
    slice_problems: list[str]
    parity: ParityReport | None
    shape_problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return (
            self.checker_ok
            and self.runtime_ok
            and self.shapes_ok
            and not self.slice_problems
            and self.parity is not None
            and bool(self.parity)
        )

    def __str__(self) -> str:
        def status(ok: bool) -> str:
            return "ok" if ok else "FAILED"

        lines = [f"validation {'passed' if self else 'FAILED'}"]
        lines.append(f"  onnx.checker (full check): {status(self.checker_ok)}")
        if self.checker_error:
            lines.extend(f"    {line}" for line in self.checker_error.strip().splitlines())
        lines.append(f"  ONNX Runtime load and run: {status(self.runtime_ok)}")
        if self.runtime_error:
            lines.extend(f"    {line}" for line in self.runtime_error.strip().splitlines())
        lines.append(f"  graph input/output shapes: {status(self.shapes_ok)}")
        lines.extend(f"    {problem}" for problem in self.shape_problems)
        lines.append(f"  plan slices reproduce the pruned weights: {status(not self.slice_problems)}")
        lines.extend(f"    {problem}" for problem in self.slice_problems)
        if self.parity is None:
            lines.append("  parity: not run (the pruned model does not run)")
        else:
            lines.extend(f"  {line}" for line in str(self.parity).splitlines())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (dataclasses.asdict); infinite errors become None (strict JSON)."""
        return _finite(dataclasses.asdict(self))


def _finite(data: Any) -> Any:
    """`data` with every non-finite float replaced by None, so json.dumps writes strict JSON."""
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_finite(value) for value in data)
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def validate(
    original: ModelLike,
    pruned: ModelLike,
    plan: Plan | str | os.PathLike,
    *,
    tolerance: float = 1e-4,
    input_shapes: dict[str, list[int]] | None = None,
) -> ValidationReport:
    """Check a pruned model: onnx.checker, ONNX Runtime, graph shapes, plan slices and parity.

    `original` and `pruned` are ModelProtos (not modified) or anything onnxprune.io.load_model
    reads. Failed checks are recorded in the report, never raised. What raises: a model or plan
    file that cannot be read (UsageError, ModelError, PlanError) and `input_shapes` that do not
    give every dynamic dim or name unknown inputs (UsageError).

    >>> report = validate("model.onnx", "pruned.onnx", "plan.json")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    validation passed
      onnx.checker (full check): ok
      ...
    """
    original_model, pruned_model, the_plan = _as_model(original), _as_model(pruned), _as_plan(plan)
    check_input_names(original_model, input_shapes)
    checker_error = None
    try:
        onnx.checker.check_model(pruned_model, full_check=True)
    except Exception as exc:
        checker_error = f"{type(exc).__name__}: {exc}"
    shape_problems = _io_shape_problems(original_model, pruned_model)
    slice_problems = check_slices(original_model, pruned_model, the_plan)
    runtime_error = None
    session = None
    try:
        feeds = make_feeds(original_model, seed=0, input_shapes=input_shapes)
        session = ort_session(pruned_model)
        session.run(None, feeds)
    except UsageError:
        raise
    except Exception as exc:
        runtime_error = f"{type(exc).__name__}: {exc}"
    parity = None
    if session is not None and runtime_error is None:
        reference = _masked_session(original_model, the_plan, tolerance)
        if isinstance(reference, ParityReport):
            parity = reference
        else:
            parity = _run_parity(
                original_model,
                reference,
                session,
                tolerance=tolerance,
                seeds=(0, 1, 2),
                input_shapes=input_shapes,
                batches=(1, 2),
            )
    return ValidationReport(
        checker_ok=checker_error is None,
        checker_error=checker_error,
        runtime_ok=runtime_error is None,
        runtime_error=runtime_error,
        shapes_ok=not shape_problems,
        slice_problems=slice_problems,
        parity=parity,
        shape_problems=shape_problems,
    )
