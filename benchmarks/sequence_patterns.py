"""Recurrent layers, channel padding and vocabularies (issue 17): what each models/sequence file
loses at one ratio, with the onnxprune that is importable, and the table of two such runs.

    python benchmarks/sequence_patterns.py measure OUT.json [--ratio 0.3]   # with one revision
    python benchmarks/sequence_patterns.py table BEFORE.json AFTER.json [--out OUT.md]  # default: beside

The checked-in runs: benchmarks/sequence_patterns_before.json (revision 2b2b1fd, main before issue 17)
and benchmarks/sequence_patterns_after.json (this branch).

Run `measure` once with the code before the change (a venv with that revision installed) and once
after; `table` writes the comparison: parameters and MACs before -> after, the share of
parameters removed, mask-equivalence parity, and the barriers that pin the largest groups.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "sequence"


def measure(ratio: float) -> dict:
    import onnxprune  # the revision under test, as installed

    rows = []
    for name in sorted(json.loads((FOLDER / "PROVENANCE.json").read_text())):
        path = FOLDER / name
        result = onnxprune.prune(path, ratio=ratio)
        report = onnxprune.validate(path, result.model, result.plan)
        worst = max((o.rel_err for o in report.parity.outputs), default=None) if report.parity else None
        analysis = onnxprune.analyze(path)
        pinned = sorted(analysis.pinned_groups, key=lambda g: -g.size)
        r = result.report
        rows.append(
            {
                "model": path.stem,
                "params": [r.params_before, r.params_after],
                "macs": [r.macs_before, r.macs_after],
                "valid": bool(report),
                "parity_rel_err": worst,
                "barriers": [str(g.barriers[0]) for g in pinned[:3] if g.barriers],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    revision = subprocess.run(
        ["git", "-C", str(Path(onnxprune.__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "ratio": ratio,
        "onnxprune": str(Path(onnxprune.__file__).parent),
        "revision": revision,
        "rows": rows,
    }


def _cut(row: dict) -> float:
    before, after = row["params"]
    return 1 - after / before


def table(before: dict, after: dict) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"# Recurrent layers, channel padding, vocabularies (issue 17)\n\n"
        f"Command: `python benchmarks/sequence_patterns.py measure` with revision {before['revision']} "
        f"(before) and {after['revision']} (after), then `table`. "
        f"`onnxprune.prune(path, ratio={after['ratio']})` "
        f"with default options (round-to 8) on every file of models/sequence; parity is the worst relative "
        f"error of pruned vs masked original. Machine: {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{load:.1f}.\n",
        "| model | params before | after (before the change) | cut | after (this change) | cut | MACs after "
        "| valid | parity rel err |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    old = {row["model"]: row for row in before["rows"]}
    for row in after["rows"]:
        was = old.get(row["model"])
        p0, p1 = row["params"]
        m0, m1 = row["macs"]
        prior = f"{was['params'][1]:,} | {_cut(was):.0%}" if was else "n/a | n/a"
        parity = "n/a" if row["parity_rel_err"] is None else f"{row['parity_rel_err']:.1e}"
        lines.append(
            f"| {row['model']} | {p0:,} | {prior} | {p1:,} | {_cut(row):.0%} "
            f"| {m0 / 1e6:.2f}M → {m1 / 1e6:.2f}M "
            f"| {'yes' if row['valid'] else 'NO'} | {parity} |"
        )
    lines.append("\nLargest pinned groups after this change (their first barrier):\n")
    for row in after["rows"]:
        lines.append(f"- {row['model']}: " + "; ".join(row["barriers"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("out", type=Path)
    m.add_argument("--ratio", type=float, default=0.3)
    t = sub.add_parser("table")
    t.add_argument("before", type=Path)
    t.add_argument("after", type=Path)
    t.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "sequence_patterns.md")
    args = parser.parse_args()
    if args.command == "measure":
        args.out.write_text(json.dumps(measure(args.ratio), indent=1) + "\n")
    else:
        text = table(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
        args.out.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
