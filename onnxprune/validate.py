"""Validation of a pruned model against its original and the plan (shared/DESIGN.md, "Parity").

`validate` runs every check and returns a `ValidationReport`: onnx.checker, an ONNX Runtime load
and run, the graph's input and output shapes, the plan's slices and updates (`slice_check`),
mask-equivalence parity (`parity`) and, when asked or when weights changed on purpose, fidelity
to the unpruned original (`fidelity`). The pieces live in their own modules; this one ties them
together and re-exports the names callers import from it.

A plan with `updates` (compensation changed kept weights after slicing) is validated in two
steps: parity on the *structural* model (sliced, before any weight-changing pass; give it as
`structural=`), then, on the final model, exact slices for every tensor not in `updates` and
shapes for those in it, with fidelity reported beside. Weight sparsity's updates are checked
further (`onnxprune.sparsity.check`: only entries zeroed, N:M patterns), and a plan whose updates
are all weight sparsity gets parity on the final model itself, the original carrying the same
zeros. Sparse initializers are checked in their dense form.

>>> report = validate("model.onnx", "pruned.onnx", Plan.load("plan.json"))  # doctest: +SKIP
>>> bool(report), report.parity.outputs[0].rel_err < 1e-4  # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxprune.data import DataLoader, DataSource
from onnxprune.errors import UsageError
from onnxprune.fidelity import FidelityReport, OutputFidelity, check_fidelity
from onnxprune.graph import quantized_weights
from onnxprune.io import ModelLike
from onnxprune.metrics import check_input_names, graph_inputs, tensor_dims
from onnxprune.parity import (
    ABSOLUTE_FLOOR,
    HALF_PRECISION_TOLERANCE,
    OutputDiff,
    ParityReport,
    as_model,
    as_plan,
    check_parity,
    finite,
    masked_model,
    masked_session,
    run_parity,
)
from onnxprune.plan import Plan
from onnxprune.runtime import FEED_INT_HIGH, make_feeds, ort_session
from onnxprune.slice_check import check_slices
from onnxprune.sparsity.check import sparsity_only, with_zeros_of
from onnxprune.sparsity.storage import densified


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
    """Every check of `validate`; true only when all of them hold and parity was checked.

    `parity_skipped` says why parity was not checked (a plan with updates and no structural
    model); such a report is false: nothing showed the prune itself is exact. `fidelity` is a
    measurement, not a check: it never makes the report false.

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
    parity_skipped: str | None = None
    fidelity: FidelityReport | None = None

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
        lines.append(
            f"  plan slices and updates reproduce the pruned weights: {status(not self.slice_problems)}"
        )
        lines.extend(f"    {problem}" for problem in self.slice_problems)
        if self.parity_skipped:
            lines.append(f"  parity: NOT CHECKED: {self.parity_skipped}")
        elif self.parity is None:
            lines.append("  parity: not run (the pruned model does not run)")
        else:
            lines.extend(f"  {line}" for line in str(self.parity).splitlines())
        if self.fidelity is not None:
            lines.extend(f"  {line}" for line in str(self.fidelity).splitlines())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (dataclasses.asdict); infinite errors become None (strict JSON)."""
        return finite(dataclasses.asdict(self))


def _checker_error(model: onnx.ModelProto) -> str | None:
    """The full check's error, or None. A model with sparse initializers gets the structural
    check, and its dense form the full one: ONNX shape inference types a sparse initializer as a
    sparse tensor, which the standard ops' inference does not accept."""
    try:
        if model.graph.sparse_initializer:
            onnx.checker.check_model(model)
            model = densified(model)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _runtime_error(
    model: onnx.ModelProto, original: onnx.ModelProto, input_shapes: dict[str, list[int]] | None
) -> tuple[Any, str | None]:
    """A session of `model` run once on a random feed, or the error that stopped it."""
    try:
        feeds = make_feeds(original, seed=0, input_shapes=input_shapes)
        session = ort_session(model)
        session.run(None, feeds)
    except UsageError:
        raise
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return session, None


def _parity(
    original: onnx.ModelProto,
    plan: Plan,
    subject: onnx.ModelProto,
    session: Any,
    *,
    label: str,
    tolerance: float,
    input_shapes: dict[str, list[int]] | None,
) -> ParityReport:
    """Parity of `subject` (whose loaded session is `session`) against the masked original."""
    reference = masked_session(original, plan, tolerance)
    if isinstance(reference, ParityReport):
        return dataclasses.replace(reference, subject=label)
    if quantized_weights(original.graph):  # integer paths: compared as the graph computes them
        session = ort_session(subject, graph_quantization=True)
    report = run_parity(
        original,
        reference,
        session,
        tolerance=tolerance,
        seeds=(0, 1, 2),
        input_shapes=input_shapes,
        batches=(1, 2),
    )
    return dataclasses.replace(report, subject=label)


def _structural_checks(
    original: onnx.ModelProto,
    structural: ModelLike,
    plan: Plan,
    *,
    tolerance: float,
    input_shapes: dict[str, list[int]] | None,
) -> tuple[list[str], ParityReport | None, str | None]:
    """Slice problems (prefixed), parity and the runtime error of the structural model."""
    model = as_model(structural)
    exact = dataclasses.replace(plan, updates=())  # before compensation every slice is exact
    problems = [f"structural model: {p}" for p in check_slices(original, model, exact)]
    session, error = _runtime_error(model, original, input_shapes)
    if session is None:
        return problems, None, f"structural model: {error}"
    parity = _parity(
        original,
        plan,
        model,
        session,
        label="structural prune",
        tolerance=tolerance,
        input_shapes=input_shapes,
    )
    return problems, parity, None


def _parity_step(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    session: Any,
    plan: Plan,
    structural: ModelLike | None,
    *,
    tolerance: float,
    input_shapes: dict[str, list[int]] | None,
) -> tuple[ParityReport | None, str | None, list[str], str | None]:
    """(parity, why it was skipped, structural slice problems, structural runtime error)."""
    if structural is not None:
        problems, parity, error = _structural_checks(
            original, structural, plan, tolerance=tolerance, input_shapes=input_shapes
        )
        return parity, None, problems, error
    if session is not None and sparsity_only(plan):  # the original gets the same zeroed entries
        parity = _parity(
            with_zeros_of(original, densified(pruned), plan),
            dataclasses.replace(plan, updates=()),
            pruned,
            session,
            label="pruned (its zeroed weights zeroed in the original too)",
            tolerance=tolerance,
            input_shapes=input_shapes,
        )
        return parity, None, [], None
    if plan.updates:
        skipped = (
            f"the plan lists {len(plan.updates)} updated tensors (values changed after slicing), so the "
            "pruned model is not mask-equivalent by design; give the structural model (before those passes)"
        )
        return None, skipped, [], None
    if session is None:
        return None, None, [], None
    parity = _parity(
        original, plan, pruned, session, label="pruned", tolerance=tolerance, input_shapes=input_shapes
    )
    return parity, None, [], None


def validate(
    original: ModelLike,
    pruned: ModelLike,
    plan: Plan | str | os.PathLike,
    *,
    tolerance: float = 1e-4,
    input_shapes: dict[str, list[int]] | None = None,
    structural: ModelLike | None = None,
    data: DataSource | DataLoader | None = None,
    fidelity: bool | None = None,
) -> ValidationReport:
    """Check a pruned model: onnx.checker, ONNX Runtime, graph shapes, plan slices and parity.

    `original`, `pruned` and `structural` are ModelProtos (not modified) or anything
    onnxprune.io.load_model reads. Parity is checked on `structural` when given (the model
    sliced by the plan, before any pass that changed values: it must be an exact slice
    everywhere), else on `pruned` unless the plan lists `updates`, in which case it is not
    checked and the report says so (and is false). `pruned` is checked slice by slice, the
    tensors in `updates` by shape. Fidelity of `pruned` to `original` is reported on `data`
    (anything onnxprune.data.open_data reads; random feeds if None) when `fidelity` is True, or
    when it is None and the plan has updates or `data` is given.

    Failed checks are recorded in the report, never raised. What raises: a model, plan or data
    file that cannot be read (UsageError, ModelError, PlanError) and `input_shapes` that do not
    give every dynamic dim or name unknown inputs (UsageError).

    >>> report = validate("model.onnx", "final.onnx", "plan.json", structural="sliced.onnx")  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    validation passed
      onnx.checker (full check): ok
      ...
      parity ok: structural prune vs masked original on 6 random feeds, relative tolerance 0.0001
      ...
      fidelity to the original on random feeds (3 feeds)
        output 'y' (2, 10): cosine 0.9991, rel err 0.0412, max abs 0.31, argmax agreement 1 (6 samples)
    """
    original_model, pruned_model, the_plan = as_model(original), as_model(pruned), as_plan(plan)
    check_input_names(original_model, input_shapes)
    checker_error = _checker_error(pruned_model)
    shape_problems = _io_shape_problems(original_model, pruned_model)
    slice_problems = check_slices(original_model, densified(pruned_model), the_plan)
    session, runtime_error = _runtime_error(pruned_model, original_model, input_shapes)
    parity, skipped, problems, structural_error = _parity_step(
        original_model,
        pruned_model,
        session,
        the_plan,
        structural,
        tolerance=tolerance,
        input_shapes=input_shapes,
    )
    slice_problems += problems
    runtime_error = runtime_error or structural_error
    wants_fidelity = fidelity if fidelity is not None else bool(the_plan.updates) or data is not None
    fidelity_report = None
    if wants_fidelity and session is not None:
        fidelity_report = check_fidelity(original_model, pruned_model, data, input_shapes=input_shapes)
    return ValidationReport(
        checker_ok=checker_error is None,
        checker_error=checker_error,
        runtime_ok=runtime_error is None,
        runtime_error=runtime_error,
        shapes_ok=not shape_problems,
        slice_problems=slice_problems,
        parity=parity,
        shape_problems=shape_problems,
        parity_skipped=skipped,
        fidelity=fidelity_report,
    )


__all__ = [
    "ABSOLUTE_FLOOR",
    "FEED_INT_HIGH",
    "HALF_PRECISION_TOLERANCE",
    "FidelityReport",
    "OutputDiff",
    "OutputFidelity",
    "ParityReport",
    "ValidationReport",
    "check_fidelity",
    "check_parity",
    "check_slices",
    "make_feeds",
    "masked_model",
    "ort_session",
    "validate",
]
