"""At an equal MACs budget, how much of their task do trained models keep under each allocation?

    python benchmarks/budget_fidelity.py [--budgets 0.5] [--allocations uniform global sensitivity]
        [--extra [KIND=]MODEL.onnx ...] [--minilm] [--out benchmarks/budget_fidelity.md]

For every trained model of ``models/trained/`` (and ``--extra`` ones, e.g. CREPE full exported by
``models/trained/make_trained.py``), every MACs budget and every allocation:
``onnxprune.prune(path, target_macs=B, allocation=A, calibration=<its calibration set>)`` (so the
activation criterion and lsq compensation, the defaults with data), then ``onnxprune.validate``
(parity on the structural model), then the task metric and the output cosine on the *held-out*
evaluation set (`trained_fidelity.py` defines both). ``sensitivity`` allocation first measures
the per-group curves (`onnxprune.sensitivity`) on the calibration set.

With ``--minilm`` (the torch venv, see `minilm_fidelity.py`), all-MiniLM-L6-v2 is added: calibrated
on 256 template sentences, measured by the cosine between original and pruned sentence
embeddings on 200 other sentences (`minilm_calibration.py`'s sets).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from machine import cpu_model, git_state, ram_gib
from trained_fidelity import KINDS, checked_in_models, kind_of_extra, load_npz, output_fidelity, run_model

import onnxprune
from onnxprune.budget import Budget

HERE = Path(__file__).resolve().parent


def sensitivity_curves(path: Any, calibration: Any, shapes: Any = None) -> Any:
    """The per-group sensitivity curves `allocation="sensitivity"` reads, measured on the
    calibration data (fidelity on its held-out fifth)."""
    return onnxprune.sensitivity(path, calibration=calibration, latency_runs=0, input_shapes=shapes)


COMPENSATE: dict[str, str] = {}
"""`compensate` for every prune when --compensate is given (else the default: lsq with data)."""


def prune_row(
    path: Any, budget: float, allocation: str, calibration: Any, curves: Any, shapes: Any = None
) -> dict[str, Any]:
    """Prune at one budget and allocation; validate; the figures of the prune."""
    if allocation == "sensitivity":  # the curves measured once per model, shared by its budgets
        goal = {"target": Budget("macs", budget, "sensitivity", sensitivity=curves.loss_curves())}
    else:
        goal = {"target_macs": budget, "allocation": allocation}
    start = time.perf_counter()
    result = onnxprune.prune(path, calibration=calibration, holdout=0.0, **goal, **COMPENSATE)
    seconds = time.perf_counter() - start
    report = onnxprune.validate(
        path, result.model, result.plan, structural=result.structural, input_shapes=shapes
    )
    b = result.report.budget
    return {
        "result": result,
        "seconds": seconds,
        "parity": bool(report),
        "macs": b.get("achieved", b["predicted"]),
        "params": result.report.params_after / result.report.params_before,
        "note": b.get("note"),
    }


def trained_rows(
    specs: list[tuple[Path, str]], budgets, allocations, log: Callable[[str], None]
) -> list[dict]:
    rows = []
    for path, kind_name in specs:
        kind = KINDS[kind_name]
        feeds, labels = load_npz(kind.eval_data), load_npz(kind.eval_labels)
        original = run_model(path, feeds)
        base = kind.metric(original, labels)
        curves = sensitivity_curves(str(path), str(kind.calib_data)) if "sensitivity" in allocations else None
        for budget in budgets:
            for allocation in allocations:
                row = {
                    "model": path.name,
                    "metric_name": kind.metric_name,
                    "budget": budget,
                    "allocation": allocation,
                    "original": base,
                }
                try:
                    got = prune_row(str(path), budget, allocation, str(kind.calib_data), curves)
                    pruned = run_model(got.pop("result").model, feeds)
                    row.update(got, pruned=kind.metric(pruned, labels))
                    out = output_fidelity(
                        kind.primary_output, original[kind.primary_output], pruned[kind.primary_output]
                    )
                    row["cosine"] = out.cosine_mean
                except Exception as exc:  # a failed prune is a row, not the end of the run
                    row["error"] = f"{type(exc).__name__}: {exc}"
                log(json.dumps({k: v for k, v in row.items() if k != "metric_name"}, default=str))
                rows.append(row)
    return rows


def minilm_rows(budgets, allocations, work_dir: Path, log: Callable[[str], None]) -> list[dict]:
    """all-MiniLM-L6-v2 (needs torch and transformers for the tokenizer; see minilm_fidelity.py)."""
    from minilm_calibration import CALIB_BATCH, CALIB_SENTENCES, EVAL_SENTENCES, feeds
    from minilm_fidelity import BATCH, embed, export, fidelity, load_torch, make_sentences, model_dir, session
    from transformers import AutoTokenizer

    directory = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    onnx_path = work_dir / "all_minilm_l6_v2_dynamo.onnx"
    if not onnx_path.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        export(load_torch(directory)[0], tokenizer, onnx_path)
    pool = make_sentences(CALIB_SENTENCES + EVAL_SENTENCES)
    calib = feeds(tokenizer, pool[:CALIB_SENTENCES], CALIB_BATCH)
    eval_batches = feeds(tokenizer, pool[CALIB_SENTENCES:], BATCH)
    eval_emb = embed(session(str(onnx_path)), eval_batches)
    shapes = {name: [1, 128] for name in calib[0]}  # MACs and validation's random feeds
    curves = sensitivity_curves(str(onnx_path), calib, shapes) if "sensitivity" in allocations else None
    rows = []
    for budget in budgets:
        for allocation in allocations:
            row = {
                "model": "all-MiniLM-L6-v2 (dynamo)",
                "metric_name": "embedding cosine (mean)",
                "budget": budget,
                "allocation": allocation,
                "original": 1.0,
            }
            try:
                got = prune_row(str(onnx_path), budget, allocation, calib, curves, shapes)
                emb = embed(session(got.pop("result").model.SerializeToString()), eval_batches)
                figures = fidelity(eval_emb, emb)
                row.update(got, pruned=figures["cos_mean"], cosine=figures["cos_mean"], p5=figures["cos_p5"])
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            log(json.dumps({k: v for k, v in row.items() if k != "metric_name"}, default=str))
            rows.append(row)
    return rows


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    lines = [
        "# Trained models at an equal MACs budget: uniform, global and sensitivity allocation",
        "",
        f"Command: `{command}` ({seconds:.0f} s) on {git_state()}. Machine: {cpu_model()}, "
        f"{ram_gib():.0f} GiB, {os.cpu_count()} cores, onnxruntime {ort.__version__}.",
        "",
        "Every prune: `target_macs=B`, the allocation named, calibration on the model's calibration set "
        "(criterion activation; compensation lsq, the default with data, unless the command says "
        "otherwise), no group losing more than "
        "80 % of its units (the default cap), kept counts multiples of 8. Task metric and cosine on "
        "the held-out evaluation set; parity checked on the structural model.",
        "",
        "| model | task metric | MACs budget | allocation | MACs kept | params kept | original | pruned "
        "| output cosine | parity | prune s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['metric_name']} | {r['budget']:g} | {r['allocation']} | "
                f"error: {r['error'][:120]} | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['metric_name']} | {r['budget']:g} | {r['allocation']} | {_f(r['macs'])} | "
            f"{_f(r['params'])} | {_f(r['original'])} | **{_f(r['pruned'])}** | {_f(r.get('cosine'), 4)} | "
            f"{'ok' if r['parity'] else 'FAILED'} | {r['seconds']:.1f} |"
        )
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "Budgets missed:", ""] + [
            f"- {r['model']} {r['allocation']}: {r['note']}" for r in notes
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5])
    parser.add_argument("--allocations", nargs="+", default=["uniform", "global", "sensitivity"])
    parser.add_argument("--extra", action="append", default=[], metavar="[KIND=]MODEL.onnx")
    parser.add_argument("--models", default="*", help="glob over the checked-in trained model names")
    parser.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 (torch venv)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/onnxprune-minilm"))
    parser.add_argument("--out", type=Path, default=HERE / "budget_fidelity.md")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compensate", choices=("none", "bias", "lsq"), help="(default: lsq, with data)")
    args = parser.parse_args(argv)
    if args.compensate:
        COMPENSATE["compensate"] = args.compensate
    specs = [(p, k) for p, k in checked_in_models() if fnmatch.fnmatch(p.name, args.models)]
    specs += [kind_of_extra(spec) for spec in args.extra]
    start = time.perf_counter()
    rows = trained_rows(specs, args.budgets, args.allocations, print)
    if args.minilm:
        rows += minilm_rows(args.budgets, args.allocations, args.work_dir, print)
    command = "python benchmarks/budget_fidelity.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(markdown(rows, command.strip(), time.perf_counter() - start))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r.get("parity") for r in rows) else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
