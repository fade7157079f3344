"""Mask-equivalence parity (shared/DESIGN.md, "Parity").

The pruned model cannot compute what the original computes; it must compute what the original
computes with the removed channels masked: every removed index of every ``role: "in"`` slice set
to zero, and every ``dropped`` residual branch multiplied by zero where its Add reads it
(`masked_model`). `check_parity` runs both under ONNX Runtime on the same random inputs and
compares every output.

>>> report = check_parity("model.onnx", "pruned.onnx", "plan.json")  # doctest: +SKIP
>>> bool(report), report.outputs[0].rel_err < 1e-4  # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from onnxprune.errors import ModelError, PlanError
from onnxprune.graph import quantized_weights
from onnxprune.io import ModelLike, load_model
from onnxprune.metrics import check_input_names, graph_inputs, tensor_dims
from onnxprune.plan import DroppedBranch, Plan
from onnxprune.quantmask import QUANTIZED_STEPS, mask_dynamic_quantization, mask_fill, output_steps
from onnxprune.runtime import make_feeds, ort_session
from onnxprune.slice_check import plan_problems, slice_axis
from onnxprune.weights import get_weight, set_weight, weight_tensors

# Half-precision outputs round at about 1e-3 relative, so masked and pruned models that sum in a
# different order cannot agree to 1e-4; their outputs are compared at no less than this.
HALF_PRECISION_TOLERANCE = 1e-2


def masked_model(original: onnx.ModelProto, plan: Plan) -> onnx.ModelProto:
    """A copy of `original` with every removed index of every ``role: "in"`` slice set to zero
    (to its zero point for a quantized weight), the removed channels zeroed at the input of
    dynamic quantization (`onnxprune.quantmask`), and every ``dropped`` branch multiplied by
    zero where its Add reads it.

    The original is not modified. Raises PlanError if a slice names a tensor that is not a weight
    of `original`, or whose axis size is not the slice's `size`.

    >>> from onnxprune.plan import TensorSlice
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[1, 3] x) => (float[1, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}> { y = MatMul(x, w) }''')
    >>> plan = Plan(slices=(TensorSlice("w", axis=0, size=3, keep=(0, 2), role="in"),))
    >>> get_weight(masked_model(m, plan), "w").tolist()
    [[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]
    """
    problems = plan_problems(weight_tensors(original), plan)
    if problems:
        raise PlanError("plan does not fit the model: " + "; ".join(problems.values()))
    masked = onnx.ModelProto()
    masked.CopyFrom(original)
    zeroed: dict[str, np.ndarray] = {}
    quantized = quantized_weights(original.graph)
    for s in plan.slices:
        if s.role != "in" or len(s.keep) == s.size:
            continue
        array = zeroed.get(s.tensor)
        if array is None:
            array = np.array(get_weight(masked, s.tensor))  # a writable copy
            zeroed[s.tensor] = array
        axis = slice_axis(s, array.ndim)
        if axis is None:  # never: plan_problems checked every axis
            continue
        index: list[Any] = [slice(None)] * array.ndim
        index[axis] = np.setdiff1d(np.arange(s.size), np.asarray(s.keep, dtype=np.int64))
        fill = mask_fill(original, s.tensor, array.shape) if s.tensor in quantized else 0  # a zero point
        array[tuple(index)] = fill if np.isscalar(fill) else fill[tuple(index)]
    for name, array in zeroed.items():
        set_weight(masked, name, array)
    mask_dynamic_quantization(masked, plan.slices)
    _drop_branches(masked, plan.dropped)
    return masked


def _drop_branches(model: onnx.ModelProto, dropped: Sequence[DroppedBranch]) -> None:
    """Multiply each dropped branch by zero where its Add reads it (a Mul inserted before the Add).

    PlanError names an entry whose Add node does not exist or does not read the branch tensor.
    """
    nodes = model.graph.node
    for k, entry in enumerate(dropped):
        position = next((i for i, n in enumerate(nodes) if n.name == entry.add), None)
        if position is None or entry.branch not in nodes[position].input or nodes[position].op_type != "Add":
            raise PlanError(
                f"dropped branch {entry.to_json()}: no Add node '{entry.add}' reads '{entry.branch}'"
            )
        add = nodes[position]
        elem = onnx.TensorProto.FLOAT
        for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
            if info.name in add.input and info.type.tensor_type.elem_type:
                elem = info.type.tensor_type.elem_type
                break
        zero, out = f"__onnxprune_zero_{k}", f"__onnxprune_dropped_{k}"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        model.graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype), zero))
        for i, name in enumerate(add.input):
            if name == entry.branch:
                add.input[i] = out
        nodes.insert(position, onnx.helper.make_node("Mul", [entry.branch, zero], [out]))


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

    `subject` says which model was compared: "pruned", or "structural prune" when a plan with
    `updates` was validated on the model before its weight-changing passes.

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
    subject: str = "pruned"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        status = "ok" if self.ok else "FAILED"
        lines = [
            f"parity {status}: {self.subject} vs masked original on {self.feeds_tried} random feeds, "
            f"relative tolerance {self.tolerance:g}"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.extend(f"  {diff}" for diff in self.outputs)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (dataclasses.asdict); infinite errors become None (strict JSON)."""
        return finite(dataclasses.asdict(self))


ABSOLUTE_FLOOR = 1e-6
"""Differences up to this absolute size pass parity whatever the output's scale (float32 rounding
of order-1 intermediate values; see tests/test_property_regressions.py)."""


def _compare(
    name: str, reference: Any, result: Any, tolerance: float, step: tuple[float, float] = (0.0, 0.0)
) -> OutputDiff:
    """Compare one output of one feed: shapes exactly, floats by relative error, the rest exactly.
    An output of an integer path passes within QUANTIZED_STEPS steps of `step`, its quantization
    step (absolute, relative to the output's largest magnitude: `quantmask.output_steps`)."""
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
        scale = float(finite.max()) if finite.size else 0.0
        ok = ok or max_abs <= QUANTIZED_STEPS * (step[0] + step[1] * scale)
        return OutputDiff(name, tuple(ref.shape), max_abs, rel_err, ok=ok, tolerance=tol)
    equal = bool(np.array_equal(ref, got))
    if ref.dtype.kind in "biu":
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        max_abs = float(np.abs(ref64 - got64).max()) if ref.size else 0.0
        scale = float(np.abs(ref64).max()) if ref.size else 0.0
    else:
        max_abs, scale = (0.0 if equal else math.inf), 1.0
    ok = equal or max_abs <= QUANTIZED_STEPS * (step[0] + step[1] * scale)
    return OutputDiff(name, tuple(ref.shape), max_abs, max_abs / max(1e-6, scale), ok=ok)


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


def has_dynamic_batch(model: onnx.ModelProto) -> bool:
    for info in graph_inputs(model):
        dims = tensor_dims(info)
        if dims is None or (dims and dims[0] is None):
            return True
    return False


def run_parity(
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
    used_batches = list(batches) if has_dynamic_batch(original) else list(batches)[:1]
    worst: dict[str, OutputDiff | None] = dict.fromkeys(names)
    steps = output_steps(original)
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
                diff = _compare(name, ref, got, tolerance, steps.get(name, (0.0, 0.0)))
                worst[name] = _worse(worst[name], diff)
        if error:
            break
    outputs = [diff for diff in worst.values() if diff is not None]
    ok = error is None and tried > 0 and all(diff.ok for diff in outputs)
    return ParityReport(ok, tolerance, outputs, tried, error)


def as_model(model: ModelLike) -> onnx.ModelProto:
    """A ModelProto as it is (never modified here), or one loaded from a path or bytes."""
    return model if isinstance(model, onnx.ModelProto) else load_model(model)[0]


def as_plan(plan: Plan | str | os.PathLike) -> Plan:
    return plan if isinstance(plan, Plan) else Plan.load(plan)


def masked_session(
    original: onnx.ModelProto, plan: Plan, tolerance: float
) -> ort.InferenceSession | ParityReport:
    """A session of the masked original (the masked copy is dropped once loaded), or a failed report."""
    try:
        exact = bool(quantized_weights(original.graph))
        return ort_session(masked_model(original, plan).SerializeToString(), graph_quantization=exact)
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
    original_model, pruned_model, the_plan = as_model(original), as_model(pruned), as_plan(plan)
    check_input_names(original_model, input_shapes)
    reference = masked_session(original_model, the_plan, tolerance)
    if isinstance(reference, ParityReport):
        return reference
    try:
        session = ort_session(pruned_model, graph_quantization=bool(quantized_weights(original_model.graph)))
    except Exception as exc:
        return ParityReport(False, tolerance, [], 0, error=f"the pruned model does not load: {exc}")
    return run_parity(
        original_model,
        reference,
        session,
        tolerance=tolerance,
        seeds=seeds,
        input_shapes=input_shapes,
        batches=batches,
    )


def finite(data: Any) -> Any:
    """`data` with every non-finite float replaced by None, so json.dumps writes strict JSON.

    >>> finite({"a": [1.0, float("inf")]})
    {'a': [1.0, None]}
    """
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(finite(value) for value in data)
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
