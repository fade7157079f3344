"""Weight sparsity on the trained models: task metric, fidelity and file size.

    python benchmarks/sparsity_fidelity.py [--models GLOB] [--extra [KIND=]MODEL.onnx ...]
        [--out benchmarks/sparsity_fidelity.md] [--json OUT.json]

For every trained model checked in under ``models/trained/`` (and every ``--extra`` one, e.g. CREPE
full from ``/work/cache-trained``) and every configuration below: ``onnxprune.prune``, then
``onnxprune.validate`` (checker, ONNX Runtime, plan slices and sparsified tensors, parity on the
structural model), then the original and the result run under ONNX Runtime on the model's
held-out evaluation set, scored with the task metric of ``benchmarks/trained_fidelity.py``.

Configurations: 50 % unstructured per layer and global, 2:4, each by magnitude |W| and by
Wanda's |W|·‖X‖ with the model's calibration set (``--calib``; compensation off), 2:4 after a
30 % structural prune (by magnitude; and by activation with least-squares compensation, then 2:4
by Wanda), and 80 % per layer stored as sparse initializers (``--sparse-format``). First and last
layers stay dense (the default). File sizes are the serialized model, raw and gzip-compressed
(level 6): ONNX Runtime's CPU kernels run sparse weights dense, so there is no latency figure to
gain here.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402  benchmarks/machine.py


def _harness():
    spec = importlib.util.spec_from_file_location("trained_fidelity", HERE / "trained_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tf = _harness()

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("50 % per layer", {"sparsity": 0.5}),
    ("50 % global", {"sparsity": 0.5, "sparsity_scope": "global"}),
    ("2:4", {"nm": "2:4"}),
    ("50 % per layer, Wanda", {"sparsity": 0.5, "calibration": "{calib}"}),
    ("50 % global, Wanda", {"sparsity": 0.5, "sparsity_scope": "global", "calibration": "{calib}"}),
    ("2:4, Wanda", {"nm": "2:4", "calibration": "{calib}"}),
    ("30 % channels + 2:4", {"ratio": 0.3, "nm": "2:4"}),
    (
        "30 % channels (activation + lsq) + 2:4, Wanda",
        {"ratio": 0.3, "nm": "2:4", "calibration": "{calib}", "compensate": "lsq"},
    ),
    ("80 % per layer, sparse format", {"sparsity": 0.8, "sparse_format": True}),
]
CALIBRATED = {
    "holdout": 0.0,
    "compensate": "none",
}  # all calibration samples for the norms; eval set held out


@dataclass
class Row:
    model: str
    config: str
    metric_original: float
    metric: float | None = None
    cosine: float | None = None
    rel_err: float | None = None
    sparsity: float | None = None
    all_sparsity: float | None = None
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    valid: bool | None = None
    problems: str | None = None
    seconds: float | None = None
    error: str | None = None


def run_one(path: Path, kind, name: str, kwargs: dict, feeds, labels, original) -> Row:
    import onnxprune

    row = Row(path.name, name, kind.metric(original, labels))
    args = tf.bind_prune_args(kwargs, kind)
    if "calibration" in args:
        for key, value in CALIBRATED.items():
            args.setdefault(key, value)
    try:
        start = time.perf_counter()
        result = onnxprune.prune(str(path), **args)
        row.seconds = time.perf_counter() - start
        figures = result.report.sparsity
        row.sparsity, row.all_sparsity, row.sizes = (
            figures["sparsity"],
            figures["all_sparsity"],
            figures["file_size"],
        )
        report = onnxprune.validate(str(path), result.model, result.plan, structural=result.structural)
        row.valid = bool(report)
        if not report:
            row.problems = str(report)
        pruned = tf.run_model(result.model, feeds)
        row.metric = kind.metric(pruned, labels)
        fid = tf.output_fidelity(
            kind.primary_output, original[kind.primary_output], pruned[kind.primary_output]
        )
        row.cosine, row.rel_err = fid.cosine_mean, fid.relative_error
    except Exception as exc:  # a failed run is a row of the table
        row.error = f"{type(exc).__name__}: {exc}"
    return row


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _kb(sizes: dict, what: str, key: str) -> str:
    entry = sizes.get(what)
    return "—" if entry is None else f"{entry[key] / 1024:,.0f}"


def markdown(rows: list[Row], command: str, seconds: float, code: str) -> str:
    from importlib.metadata import version

    versions = ", ".join(f"{p} {version(p)}" for p in ("onnxprune", "onnx", "onnxruntime", "numpy"))
    lines = [
        "# Weight sparsity on the trained models: task metric and file size",
        "",
        "Written by `benchmarks/sparsity_fidelity.py` (its docstring says what each row runs).",
        "",
        f"- command: `{command}`",
        f"- machine: {machine.cpu_model()}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- versions: {versions}; code {code}",
        f"- wall time: {seconds:.0f} s",
        "",
        "Task metric on the held-out evaluation set: CREPE = raw pitch accuracy within 50 cents,",
        "RNet = face/non-face accuracy (see `benchmarks/trained_fidelity.py`). Cosine and rel. err.",
        "of the primary output against the original's. Sparsity: zeros among the sparsified",
        "weights / among all Conv, Gemm and MatMul weights (first and last layers stay dense).",
        "Sizes in KiB, raw / gzip level 6 (sparse format: the model as stored with sparse",
        "initializers; the other columns are the dense zeroed model). ONNX Runtime's CPU kernels",
        "run the zeroed weights dense: same latency, smaller compressed file. Valid:",
        "`onnxprune.validate` passed (parity on the structural model; every sparsified tensor the",
        "structural one with entries zeroed, N:M pattern checked).",
        "",
        "| model | configuration | metric: original | sparsified | cosine | rel. err. | sparsity | of all "
        "| raw in → out | gzip in → out | sparse format raw / gzip | valid | prune s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.error:
            lines.append(f"| {r.model} | {r.config} | {r.metric_original:.3f} | error: {r.error} ||||||||||")
            continue
        lines.append(
            f"| {r.model} | {r.config} | {r.metric_original:.3f} | {_fmt(r.metric)} | {_fmt(r.cosine, 4)} | "
            f"{_fmt(r.rel_err)} | {_fmt(r.sparsity)} | {_fmt(r.all_sparsity)} | "
            f"{_kb(r.sizes, 'input', 'raw')} → {_kb(r.sizes, 'output', 'raw')} | "
            f"{_kb(r.sizes, 'input', 'gzip')} → {_kb(r.sizes, 'output', 'gzip')} | "
            f"{_kb(r.sizes, 'sparse_format', 'raw')} / {_kb(r.sizes, 'sparse_format', 'gzip')} | "
            f"{'yes' if r.valid else 'NO'} | {_fmt(r.seconds, 1)} |"
        )
    failed = [r for r in rows if r.problems]
    if failed:
        lines += ["", "## Validation failures", ""]
        for r in failed:
            lines += [f"- {r.model}, {r.config}:", "", "```", r.problems or "", "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="*", help="glob over the checked-in model file names")
    p.add_argument("--extra", action="append", default=[], metavar="[KIND=]MODEL.onnx")
    p.add_argument("--configs", default="*", help="glob over the configuration names")
    p.add_argument("--out", default=str(HERE / "sparsity_fidelity.md"))
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)
    models = [
        (path, kind) for path, kind in tf.checked_in_models() if fnmatch.fnmatch(path.name, args.models)
    ]
    models += [tf.kind_of_extra(spec) for spec in args.extra]
    configs = [(n, c) for n, c in CONFIGS if fnmatch.fnmatch(n, args.configs)]
    start, rows, code = time.perf_counter(), [], machine.git_state()  # the code as it was when started
    for path, kind_name in models:
        kind = tf.KINDS[kind_name]
        feeds, labels = tf.load_npz(kind.eval_data), tf.load_npz(kind.eval_labels)
        original = tf.run_model(path, feeds)
        for name, kwargs in configs:
            row = run_one(path, kind, name, kwargs, feeds, labels, original)
            print(f"{path.name} {name}: metric {_fmt(row.metric)} (orig {row.metric_original:.3f}), "
                  f"valid {row.valid}{', ' + row.error if row.error else ''}", flush=True)  # fmt: skip
            rows.append(row)
    command = "python benchmarks/sparsity_fidelity.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    Path(args.out).write_text(markdown(rows, command.strip(), time.perf_counter() - start, code))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.valid for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
