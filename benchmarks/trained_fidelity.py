"""How well pruned *trained* models keep their task: the ground truth for calibration-aware pruning.

    python benchmarks/trained_fidelity.py [--ratios 0.1 0.2 0.3 0.5] [--prune-arg KEY=VALUE ...]
        [--extra [KIND=]MODEL.onnx ...] [--models GLOB] [--out benchmarks/trained_fidelity.md]
        [--json OUT.json] [--split eval|calib]

For every trained model checked in under ``models/trained/`` (listed in its PROVENANCE.json) and
every ``--extra`` model, and every ratio: ``onnxprune.prune(path, ratio=r, **prune_args)``, then
``onnxprune.validate`` (checker, ONNX Runtime, shapes, plan slices, mask-equivalence parity; on the
result's ``structural`` model when the prune produced one), then the original and the pruned model
run under ONNX Runtime on the model's *held-out evaluation* set, and the task metric and the output
fidelity are computed in numpy. Nothing here imports torch.

``--prune-arg KEY=VALUE`` is passed to ``onnxprune.prune`` as a keyword; VALUE is read as JSON
when it parses (``round_to=1``, ``head_ratio=0.5``), else kept as a string (``criterion=l2``).
In a string, ``{calib}`` becomes the model's calibration file and ``{eval}`` its evaluation file,
so a calibration-aware prune is ``--prune-arg calibration={calib}``.

Task metrics (importable, numpy only):

- ``crepe``: raw pitch accuracy: the 360-bin activation decoded to a frequency as CREPE does (the
  activation-weighted average of the bins' cents in a window of 4 bins either side of the
  argmax; ``crepe_decode(..., weighting="torchcrepe")`` reproduces torchcrepe's
  ``weighted_argmax``, which weights by a second sigmoid of the activation; no dithering), and the
  fraction of frames within 50 cents (inclusive) of the true f0.
- ``mtcnn_rnet``: face / non-face accuracy of RNet's ``face_prob[:, 1] > 0.5`` on the held-out LFW
  crops, and the ROC AUC of that score.
- every model: per output, mean cosine similarity of each sample's pruned output to the
  original's, relative error ``||pruned - original|| / ||original||`` over the set, and argmax
  agreement over the last axis where the output has more than one column.

``--extra MODEL.onnx`` adds a model of a known kind that is not checked in (CREPE full, exported by
``models/trained/make_trained.py --work-dir DIR``): its kind comes from a PROVENANCE.json beside it,
else from ``KIND=`` before the path, else from its input signature; it is evaluated on the
checked-in data of that kind.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRAINED = ROOT / "models" / "trained"
DATA = TRAINED / "data"
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.5)

# CREPE's output bins: 360 bins, 20 cents apart, bin 0 at this many cents above 10 Hz.
CREPE_BINS = 360
CREPE_CENTS_PER_BIN = 20.0
CREPE_CENTS_OFFSET = 1997.3794084376191
CREPE_WINDOW = 4
PITCH_TOLERANCE_CENTS = 50.0


# ------------------------------------------------------------------------------- CREPE metric


def cents_to_hz(cents: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz of a pitch in cents above 10 Hz (CREPE's convention)."""
    return 10.0 * 2.0 ** (np.asarray(cents, dtype=np.float64) / 1200.0)


def hz_to_cents(hz: np.ndarray | float) -> np.ndarray:
    """Cents above 10 Hz of a frequency in Hz."""
    return 1200.0 * np.log2(np.asarray(hz, dtype=np.float64) / 10.0)


def crepe_bin_cents(bins: np.ndarray | int | None = None) -> np.ndarray:
    """Cents of CREPE bins (all 360 when `bins` is None)."""
    idx = np.arange(CREPE_BINS) if bins is None else np.asarray(bins)
    return CREPE_CENTS_PER_BIN * idx + CREPE_CENTS_OFFSET


def crepe_decode(activation: np.ndarray, weighting: str = "crepe") -> np.ndarray:
    """Frequencies in Hz [N] from CREPE activations [N, 360].

    The weighted average of the bins' cents over the window argmax-4 .. argmax+4 (clipped at the
    ends), weighted by the activation (``"crepe"``, as the original CREPE's local average) or by
    the sigmoid of the activation (``"torchcrepe"``, as torchcrepe's ``weighted_argmax``, which
    receives the model's sigmoid output and applies a sigmoid again).
    """
    act = np.asarray(activation, dtype=np.float64)
    if act.ndim != 2 or act.shape[1] != CREPE_BINS:
        raise ValueError(f"CREPE activations must be [N, {CREPE_BINS}], got {list(act.shape)}")
    if weighting == "crepe":
        weights = act
    elif weighting == "torchcrepe":
        weights = 1.0 / (1.0 + np.exp(-act))
    else:
        raise ValueError(f"unknown weighting {weighting!r} (crepe or torchcrepe)")
    centre = act.argmax(axis=1)
    offsets = np.arange(-CREPE_WINDOW, CREPE_WINDOW + 1)
    idx = centre[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < CREPE_BINS)
    idx = np.clip(idx, 0, CREPE_BINS - 1)
    w = np.take_along_axis(weights, idx, axis=1) * inside
    total = w.sum(axis=1)
    cents = np.where(
        total > 0,
        (w * crepe_bin_cents(idx)).sum(axis=1) / np.where(total > 0, total, 1.0),
        crepe_bin_cents(centre),
    )
    return cents_to_hz(cents)


def pitch_within(
    pred_hz: np.ndarray, true_hz: np.ndarray, tolerance: float = PITCH_TOLERANCE_CENTS
) -> np.ndarray:
    """Per frame: is the estimate within `tolerance` cents (inclusive, up to 1e-6 cent of round-off)."""
    diff = np.abs(hz_to_cents(pred_hz) - hz_to_cents(true_hz))
    return diff <= tolerance + 1e-6


def raw_pitch_accuracy(
    activation: np.ndarray,
    true_hz: np.ndarray,
    tolerance: float = PITCH_TOLERANCE_CENTS,
    weighting: str = "crepe",
) -> float:
    """Fraction of frames whose decoded pitch is within `tolerance` cents of `true_hz`."""
    return float(pitch_within(crepe_decode(activation, weighting), true_hz, tolerance).mean())


# ------------------------------------------------------------------------------ RNet metric


def face_accuracy(face_prob: np.ndarray, is_face: np.ndarray, threshold: float = 0.5) -> float:
    """Accuracy of ``face_prob[:, 1] > threshold`` against the labels (1 = face)."""
    score = np.asarray(face_prob)[:, 1]
    return float(((score > threshold) == (np.asarray(is_face) == 1)).mean())


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability a positive outscores a negative (ties count 1/2)."""
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        raise ValueError("ROC AUC needs both positive and negative samples")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


# -------------------------------------------------------------------------- generic fidelity


def cosine_per_sample(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample (first axis) of `other` to `reference`; 1 where both are 0."""
    a = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    b = np.asarray(other, dtype=np.float64).reshape(len(other), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    denom = np.where(na * nb > 0, na * nb, 1.0)
    return np.where(both_zero, 1.0, np.where(na * nb > 0, dot / denom, 0.0))


def relative_error(reference: np.ndarray, other: np.ndarray) -> float:
    """``||other - reference|| / ||reference||`` over the whole set (inf if the reference is 0)."""
    ref = np.asarray(reference, dtype=np.float64)
    norm = np.linalg.norm(ref)
    err = np.linalg.norm(np.asarray(other, dtype=np.float64) - ref)
    return float(err / norm) if norm > 0 else (0.0 if err == 0 else float("inf"))


def argmax_agreement(reference: np.ndarray, other: np.ndarray) -> float | None:
    """Fraction of samples whose argmax over the last axis is the same (None for one column)."""
    ref = np.asarray(reference)
    if ref.ndim < 2 or ref.shape[-1] < 2:
        return None
    return float((ref.argmax(axis=-1) == np.asarray(other).argmax(axis=-1)).mean())


@dataclass
class OutputFidelity:
    """How close one output of the pruned model stays to the original's."""

    name: str
    cosine_mean: float
    cosine_min: float
    relative_error: float
    argmax_agreement: float | None


def output_fidelity(name: str, reference: np.ndarray, other: np.ndarray) -> OutputFidelity:
    """Cosine (mean and min over samples), relative error and argmax agreement of one output."""
    cos = cosine_per_sample(reference, other)
    return OutputFidelity(
        name,
        float(cos.mean()),
        float(cos.min()),
        relative_error(reference, other),
        argmax_agreement(reference, other),
    )


# ----------------------------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class Kind:
    """A kind of trained model: its data, its task metric and its primary output."""

    name: str
    metric_name: str
    eval_data: Path
    eval_labels: Path
    calib_data: Path
    calib_labels: Path
    primary_output: str
    metric: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], float]
    signature: tuple[str, tuple[int, ...]]  # input name and shape without the batch axis
    extra_metrics: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], dict[str, float]] = field(
        default=lambda outputs, labels: {}
    )


def _crepe_metric(outputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> float:
    return raw_pitch_accuracy(outputs["activation"], labels["f0_hz"])


def _crepe_extra(outputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    cents = np.abs(hz_to_cents(crepe_decode(outputs["activation"])) - hz_to_cents(labels["f0_hz"]))
    return {
        "rpa_torchcrepe_decode": raw_pitch_accuracy(
            outputs["activation"], labels["f0_hz"], weighting="torchcrepe"
        ),
        "median_abs_cents": float(np.median(cents)),
    }


def _rnet_metric(outputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> float:
    return face_accuracy(outputs["face_prob"], labels["is_face"])


def _rnet_extra(outputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"auc": roc_auc(outputs["face_prob"][:, 1], labels["is_face"] == 1)}


KINDS: dict[str, Kind] = {
    "crepe": Kind(
        "crepe",
        "raw pitch accuracy (50 cents)",
        DATA / "crepe_eval.npz",
        DATA / "crepe_eval_labels.npz",
        DATA / "crepe_calib.npz",
        DATA / "crepe_calib_labels.npz",
        "activation",
        _crepe_metric,
        ("frames", (1024,)),
        _crepe_extra,
    ),
    "mtcnn_rnet": Kind(
        "mtcnn_rnet",
        "face/non-face accuracy",
        DATA / "rnet_eval.npz",
        DATA / "rnet_eval_labels.npz",
        DATA / "rnet_calib.npz",
        DATA / "rnet_calib_labels.npz",
        "face_prob",
        _rnet_metric,
        ("image", (3, 24, 24)),
        _rnet_extra,
    ),
}


# ------------------------------------------------------------------------------- the harness


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def run_model(model: Any, feeds: Mapping[str, np.ndarray], batch: int = 50) -> dict[str, np.ndarray]:
    """Outputs by name of a model (path or ModelProto) on feeds, in batches, under ONNX Runtime (CPU)."""
    import onnxruntime as ort

    source: str | bytes = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(feeds.values())))
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, count, batch):
        got = session.run(None, {k: v[start : start + batch] for k, v in feeds.items()})
        for part, value in zip(parts, got, strict=True):
            part.append(value)
    return {name: np.concatenate(part) for name, part in zip(names, parts, strict=True)}


def parse_prune_args(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to keywords; VALUE as JSON when it parses, else the string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--prune-arg wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def bind_prune_args(args: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """The prune keywords for one model: ``{calib}`` / ``{eval}`` in strings become its data files."""
    return {
        key: value.replace("{calib}", str(kind.calib_data)).replace("{eval}", str(kind.eval_data))
        if isinstance(value, str)
        else value
        for key, value in args.items()
    }


def checked_in_models() -> list[tuple[Path, str]]:
    """(path, kind) of every model listed in models/trained/PROVENANCE.json."""
    doc = json.loads((TRAINED / "PROVENANCE.json").read_text())
    return [(TRAINED / name, entry["kind"]) for name, entry in sorted(doc["models"].items())]


def kind_of_extra(spec: str) -> tuple[Path, str]:
    """(path, kind) of ``--extra [KIND=]MODEL.onnx``: the kind given, else PROVENANCE.json, else signature."""
    kind, sep, path_text = spec.partition("=")
    if sep and kind in KINDS:
        return Path(path_text), kind
    path = Path(spec)
    provenance = path.parent / "PROVENANCE.json"
    if provenance.exists():
        entry = json.loads(provenance.read_text()).get("models", {}).get(path.name)
        if entry and entry.get("kind") in KINDS:
            return path, entry["kind"]
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) == 1:
        dims = tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:])
        for name, known in KINDS.items():
            if known.signature == (inputs[0].name, dims):
                return path, name
    raise SystemExit(f"{path}: unknown kind; write KIND=PATH with KIND one of {', '.join(KINDS)}")


@dataclass
class Row:
    """One model at one ratio."""

    model: str
    kind: str
    ratio: float
    metric_original: float
    metric_pruned: float | None = None
    extra_original: dict[str, float] = field(default_factory=dict)
    extra_pruned: dict[str, float] = field(default_factory=dict)
    outputs: list[OutputFidelity] = field(default_factory=list)
    params_ratio: float | None = None
    macs_ratio: float | None = None
    parity: bool | None = None
    validation: str | None = None
    prune_seconds: float | None = None
    error: str | None = None


def evaluate(
    path: Path,
    kind: Kind,
    ratios: list[float],
    prune_args: Mapping[str, Any],
    log: Callable[[str], None] = print,
    split: str = "eval",
) -> list[Row]:
    """Prune one model at every ratio, validate each prune, and measure it on the held-out set.

    `split="calib"` measures on the calibration set instead (to see how much a calibrated prune
    overfits its own samples); the table should then say so.
    """
    import onnxprune

    if split not in ("eval", "calib"):
        raise ValueError(f"split must be eval or calib, not {split!r}")
    feeds = load_npz(kind.eval_data if split == "eval" else kind.calib_data)
    labels = load_npz(kind.eval_labels if split == "eval" else kind.calib_labels)
    original = run_model(path, feeds)
    base = kind.metric(original, labels)
    base_extra = kind.extra_metrics(original, labels)
    log(f"{path.name}: {kind.metric_name} original {base:.3f} {base_extra}")
    rows = []
    for ratio in ratios:
        row = Row(path.name, kind.name, ratio, base, extra_original=base_extra)
        try:
            start = time.perf_counter()
            result = onnxprune.prune(str(path), ratio=ratio, **bind_prune_args(prune_args, kind))
            row.prune_seconds = time.perf_counter() - start
            rep = result.report
            row.params_ratio = rep.params_after / rep.params_before
            if rep.macs_before and rep.macs_after is not None:
                row.macs_ratio = rep.macs_after / rep.macs_before
            report = onnxprune.validate(
                str(path), result.model, result.plan, structural=getattr(result, "structural", None)
            )
            skipped = getattr(report, "parity_skipped", None)
            row.parity = None if skipped and report.checker_ok and report.runtime_ok else bool(report)
            if not report:
                row.validation = str(report)
            pruned = run_model(result.model, feeds)
            row.metric_pruned = kind.metric(pruned, labels)
            row.extra_pruned = kind.extra_metrics(pruned, labels)
            row.outputs = [output_fidelity(name, original[name], pruned[name]) for name in original]
        except Exception as exc:  # a failed prune is a row of the table, not the end of the run
            row.error = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        primary = next((o for o in row.outputs if o.name == kind.primary_output), None)
        log(
            f"  ratio {ratio}: {kind.metric_name} {_fmt(row.metric_pruned)}, "
            f"cosine {_fmt(primary.cosine_mean if primary else None)}, parity {row.parity}"
            + (f", error {row.error}" if row.error else "")
        )
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(
    rows: list[Row], command: str, prune_args: Mapping[str, Any], seconds: float, split: str = "eval"
) -> str:
    """The results page: what was run, on what, and one table row per model and ratio."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import machine  # benchmarks/machine.py

    import onnxprune  # noqa: F401  (its version is recorded below)

    versions = {}
    for package in ("onnxprune", "onnx", "onnxruntime", "numpy"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "?"
    lines = [
        "# Trained models: task metric after pruning",
        "",
        "Written by `benchmarks/trained_fidelity.py` (see its docstring for the metrics and the data).",
        "",
        f"- command: `{command}`",
        f"- prune keywords: `{dict(prune_args) or 'defaults'}` (plus `ratio`)",
        f"- machine: {machine.cpu_model()}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}; code {machine.git_state()}",
        f"- wall time: {seconds:.0f} s",
        "",
        "Task metric on the held-out evaluation set (never the calibration set): CREPE = raw pitch"
        if split == "eval"
        else "Task metric on the CALIBRATION set (`--split calib`: not held out!): CREPE = raw pitch",
        "accuracy within 50 cents on synthetic harmonic tones; RNet = face/non-face accuracy at",
        "0.5 on LFW crops (100 images and their mirrors). Cosine = mean over samples of the",
        "primary output's cosine to the original (CREPE `activation`, RNet `face_prob`); rel. err. =",
        "`||pruned - original|| / ||original||` of that output; the other outputs are in `--json`.",
        "Params and MACs are pruned / original. Parity = `onnxprune.validate` passed (checker, ORT,",
        "shapes, plan slices, mask-equivalence parity).",
        "",
        "| model | ratio | task metric: original | pruned | cosine | rel. err. | argmax agree "
        "| params | MACs | parity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    kinds = {row.kind: KINDS[row.kind] for row in rows}
    for row in rows:
        primary = next((o for o in row.outputs if o.name == kinds[row.kind].primary_output), None)
        parity = "skipped" if row.parity is None else ("ok" if row.parity else "FAILED")
        if row.error:
            parity = f"error: {row.error[:80]}"
        lines.append(
            f"| {row.model} | {row.ratio:g} | {row.metric_original:.3f} | {_fmt(row.metric_pruned)} | "
            f"{_fmt(primary.cosine_mean if primary else None)} | "
            f"{_fmt(primary.relative_error if primary else None)} | "
            f"{_fmt(primary.argmax_agreement if primary else None)} | {_fmt(row.params_ratio, 2)} | "
            f"{_fmt(row.macs_ratio, 2)} | {parity} |"
        )
    extras = [row for row in rows if row.extra_pruned]
    if extras:
        lines += [
            "",
            "Secondary metrics, original → pruned (CREPE: raw pitch accuracy with torchcrepe's decoding,",
            "median absolute error in cents; RNet: ROC AUC of the face score):",
            "",
            "| model | ratio | secondary metrics |",
            "| --- | --- | --- |",
        ]
        for row in extras:
            text = "; ".join(
                f"{key} {row.extra_original.get(key, float('nan')):.3f} → {value:.3f}"
                for key, value in row.extra_pruned.items()
            )
            lines.append(f"| {row.model} | {row.ratio:g} | {text} |")
    failed = [row for row in rows if row.validation]
    if failed:
        lines += ["", "Validation failures:", ""]
        for row in failed:
            lines += [f"- {row.model} at {row.ratio:g}:", "", "```", row.validation or "", "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the harness; write the markdown table (and JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS))
    parser.add_argument("--prune-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--extra", action="append", default=[], metavar="[KIND=]MODEL.onnx")
    parser.add_argument("--models", default="*", help="glob over the checked-in model file names")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "trained_fidelity.md")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--split", choices=("eval", "calib"), default="eval", help="measure on this set (default: held out)"
    )
    args = parser.parse_args(argv)
    prune_args = parse_prune_args(args.prune_arg)
    models = [(p, k) for p, k in checked_in_models() if fnmatch.fnmatch(p.name, args.models)]
    models += [kind_of_extra(spec) for spec in args.extra]
    start = time.perf_counter()
    rows: list[Row] = []
    for path, kind in models:
        rows += evaluate(path, KINDS[kind], args.ratios, prune_args, split=args.split)
    seconds = time.perf_counter() - start
    command = "python benchmarks/trained_fidelity.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    args.out.write_text(markdown(rows, command.strip(), prune_args, seconds, args.split))
    print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=1) + "\n")
    return 0 if all(row.parity and not row.error for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
