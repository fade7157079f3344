"""Fidelity: how closely a final model tracks the unpruned original (shared/DESIGN.md, "Parity").

Parity says the structural prune computes exactly what the masked original computes. Once a
pass changes weights on purpose (compensation, listed in the plan's `updates`), the final model
computes something else, and the question becomes how close it stays to the *unpruned*
original on real samples. `check_fidelity` runs both on the same feeds (user data through
`onnxprune.runtime`, or random feeds) and reports, per output, the cosine similarity and the
relative L2 error over all samples, and for outputs that look like class scores (float,
shape [N, C] with C >= 2) the fraction of samples whose argmax agrees. It is a measurement
reported beside parity, not a pass/fail check.

>>> report = check_fidelity("model.onnx", "compensated.onnx", "heldout.npz")  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
fidelity to the original on heldout.npz (32 feeds, 256 samples)
  output 'logits' (8, 1000): cosine 0.9984, rel err 0.0563, argmax agreement 0.969
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxprune.data import DataLoader, DataSource, open_data
from onnxprune.io import ModelLike
from onnxprune.metrics import check_input_names
from onnxprune.parity import as_model, finite, has_dynamic_batch
from onnxprune.runtime import RandomLoader, ort_session


@dataclass
class OutputFidelity:
    """One output of the final model against the original, over every sample fed.

    `cosine` and `rel_err` (||final - original|| / ||original||) treat all values of all
    samples as one vector; `argmax_agreement` is set for class-score outputs only; `detail`
    says why figures are missing (shape mismatch, non-float output).

    >>> str(OutputFidelity("y", (2, 10), 0.999, 0.04, 0.2, 1.0, 2))
    "output 'y' (2, 10): cosine 0.999, rel err 0.04, max abs 0.2, argmax agreement 1 (2 samples)"
    """

    name: str
    shape: tuple
    cosine: float | None
    rel_err: float | None
    max_abs: float | None
    argmax_agreement: float | None = None
    argmax_samples: int = 0
    detail: str | None = None

    def __str__(self) -> str:
        head = f"output '{self.name}' {self.shape}"
        if self.detail:
            return f"{head}: {self.detail}"
        text = f"{head}: cosine {self.cosine:.4g}, rel err {self.rel_err:.3g}, max abs {self.max_abs:.3g}"
        if self.argmax_agreement is not None:
            text += f", argmax agreement {self.argmax_agreement:.3g} ({self.argmax_samples} samples)"
        return text


@dataclass
class FidelityReport:
    """Fidelity of every output on the feeds of `source`; `error` if a model failed to run.

    >>> r = FidelityReport("random feeds", 3, [OutputFidelity("y", (1, 4), 1.0, 0.0, 0.0)])
    >>> r.to_json()["outputs"][0]["cosine"], str(r).splitlines()[0]
    (1.0, 'fidelity to the original on random feeds (3 feeds)')
    """

    source: str
    feeds: int
    outputs: list[OutputFidelity] = field(default_factory=list)
    error: str | None = None

    def __str__(self) -> str:
        lines = [f"fidelity to the original on {self.source} ({self.feeds} feeds)"]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.extend(f"  {output}" for output in self.outputs)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data; non-finite figures become None (strict JSON)."""
        return finite(dataclasses.asdict(self))


@dataclass
class _Sums:
    """Running sums for one output: mergeable, bounded (a few floats)."""

    dot: float = 0.0
    ref_sq: float = 0.0
    got_sq: float = 0.0
    diff_sq: float = 0.0
    max_abs: float = 0.0
    agree: int = 0
    rows: int = 0
    detail: str | None = None
    shape: tuple = ()

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        self.shape = tuple(got.shape)
        if ref.shape != got.shape:
            self.detail = f"shape {got.shape}, the original's {ref.shape}"
            return
        if ref.dtype.kind != "f" or got.dtype.kind != "f":
            self.detail = self.detail or "non-float output: no fidelity figures"
            return
        a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        self.dot += float(a @ b)
        self.ref_sq += float(a @ a)
        self.got_sq += float(b @ b)
        diff = a - b
        self.diff_sq += float(diff @ diff)
        self.max_abs = max(self.max_abs, float(np.abs(diff).max()) if diff.size else 0.0)
        if ref.ndim == 2 and ref.shape[1] >= 2:  # class scores [N, C]
            self.agree += int((ref.argmax(axis=1) == got.argmax(axis=1)).sum())
            self.rows += ref.shape[0]

    def result(self, name: str) -> OutputFidelity:
        if self.detail:
            return OutputFidelity(name, self.shape, None, None, None, detail=self.detail)
        norms = math.sqrt(self.ref_sq) * math.sqrt(self.got_sq)
        both_zero = self.ref_sq == self.got_sq == 0
        cosine = min(1.0, max(-1.0, self.dot / norms)) if norms > 0 else (1.0 if both_zero else 0.0)
        rel = math.sqrt(self.diff_sq) / math.sqrt(self.ref_sq) if self.ref_sq > 0 else math.sqrt(self.diff_sq)
        agreement = self.agree / self.rows if self.rows else None
        return OutputFidelity(name, self.shape, cosine, rel, self.max_abs, agreement, self.rows)


def check_fidelity(
    original: ModelLike,
    final: ModelLike,
    data: DataSource | DataLoader | None = None,
    *,
    input_shapes: dict[str, list[int]] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    threads: int = 2,
) -> FidelityReport:
    """Run the original and the final model on the same feeds; report how close the outputs stay.

    `data` is anything `onnxprune.data.open_data` accepts (held-out samples, not the ones used
    for calibration); without it, random feeds (one per seed, batch 2 where dim 0 is dynamic).
    Bad data raises UsageError; a model that fails to load or run gives a report with `error`.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 3] x) => (float[N, 3] y) { y = Relu(x) }''')
    >>> r = check_fidelity(m, m)
    >>> r.feeds, round(r.outputs[0].cosine, 6), r.outputs[0].argmax_agreement
    (3, 1.0, 1.0)
    """
    original_model, final_model = as_model(original), as_model(final)
    check_input_names(original_model, input_shapes)
    if data is None:
        batch = 2 if has_dynamic_batch(original_model) else 1
        loader: DataLoader = RandomLoader(seeds=seeds, batch=batch, input_shapes=input_shapes)
    else:
        loader = open_data(data)
    try:
        reference, session = ort_session(original_model, threads), ort_session(final_model, threads)
    except Exception as exc:
        return FidelityReport(loader.source, 0, error=f"a model does not load: {exc}")
    names = [o.name for o in reference.get_outputs()]
    if [o.name for o in session.get_outputs()] != names:
        return FidelityReport(loader.source, 0, error="the final model's outputs are not the original's")
    sums = {name: _Sums() for name in names}
    count = 0
    for feeds in loader.feeds(original_model):
        try:
            expected, results = reference.run(None, feeds), session.run(None, feeds)
        except Exception as exc:
            return FidelityReport(loader.source, count, error=f"feed {count} failed to run: {exc}")
        count += 1
        for name, ref, got in zip(names, expected, results, strict=True):
            if isinstance(ref, np.ndarray) and isinstance(got, np.ndarray):
                sums[name].add(ref, got)
            else:
                sums[name].detail = "non-tensor output: no fidelity figures"
    return FidelityReport(loader.source, count, [sums[name].result(name) for name in names])


@dataclass
class ReferenceOutputs:
    """The original model's outputs on fixed feeds, taken once, so that many final models (one
    per group and ratio of a sensitivity analysis) are measured without running it again.

    >>> import onnx
    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 3] x) => (float[N, 3] y) { y = Relu(x) }''')
    >>> reference = reference_outputs(m)
    >>> round(compare_to_reference(reference, m).outputs[0].cosine, 6)
    1.0
    """

    source: str
    names: list[str]
    feeds: list[dict[str, np.ndarray]]
    outputs: list[list[Any]]


def reference_outputs(
    original: ModelLike,
    data: DataSource | DataLoader | None = None,
    *,
    input_shapes: dict[str, list[int]] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    threads: int = 2,
) -> ReferenceOutputs:
    """Run `original` once on `data` (random feeds as in `check_fidelity` without it) and keep the
    feeds and outputs in memory (meant for a few batches: held-out or random samples)."""
    model = as_model(original)
    check_input_names(model, input_shapes)
    if data is None:
        batch = 2 if has_dynamic_batch(model) else 1
        loader: DataLoader = RandomLoader(seeds=seeds, batch=batch, input_shapes=input_shapes)
    else:
        loader = open_data(data)
    session = ort_session(model, threads)
    feeds = [dict(feed) for feed in loader.feeds(model)]
    return ReferenceOutputs(
        loader.source,
        [o.name for o in session.get_outputs()],
        feeds,
        [session.run(None, feed) for feed in feeds],
    )


def compare_to_reference(
    reference: ReferenceOutputs, final: ModelLike, *, threads: int = 2
) -> FidelityReport:
    """`check_fidelity` of `final` against outputs taken before (`reference_outputs`)."""
    try:
        session = ort_session(as_model(final), threads)
    except Exception as exc:
        return FidelityReport(reference.source, 0, error=f"the final model does not load: {exc}")
    if [o.name for o in session.get_outputs()] != reference.names:
        return FidelityReport(reference.source, 0, error="the final model's outputs are not the original's")
    sums = {name: _Sums() for name in reference.names}
    for count, (feed, expected) in enumerate(zip(reference.feeds, reference.outputs, strict=True)):
        try:
            results = session.run(None, feed)
        except Exception as exc:
            return FidelityReport(reference.source, count, error=f"feed {count} failed to run: {exc}")
        for name, ref, got in zip(reference.names, expected, results, strict=True):
            if isinstance(ref, np.ndarray) and isinstance(got, np.ndarray):
                sums[name].add(ref, got)
            else:
                sums[name].detail = "non-tensor output: no fidelity figures"
    outputs = [sums[name].result(name) for name in reference.names]
    return FidelityReport(reference.source, len(reference.feeds), outputs)
