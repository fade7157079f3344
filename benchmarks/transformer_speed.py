"""Speed of a pruned BERT-base-size encoder under ONNX Runtime (CPU): heads and FFN width.

    /tmp/venv/bin/python benchmarks/transformer_speed.py [--model PATH] [--regenerate] [--runs N]

The model is the BERT-base-size export of models/transformers/make_transformers.py (bert-base-uncased
config, random weights: 12 layers, hidden 768, 12 heads x 64, FFN 3072; dynamo exporter, opset 18,
dynamic batch and sequence), by default /tmp/onnxprune-bench/bert_base_dynamo.onnx, outside the
repository. When it is missing (or with --regenerate) this script makes it with the torch venv:

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python models/transformers/make_transformers.py --bench PATH

For each setting, (head_ratio, ffn_ratio) = (0.3, 0.3) and (0.5, 0.5), with the other options at their
defaults (criterion l1, round_to 8, which aligns the FFN width but never the head count), it

1. prunes with ``onnxprune.prune`` and times it (load, normalize, analyze, score, slice) and ``save``;
2. validates: ``onnxprune.validate`` once (onnx.checker, ONNX Runtime, graph shapes, plan slices,
   parity on onnxprune's own random feeds), then mask-equivalence parity at three (batch, sequence)
   shapes with realistic feeds (token ids over the whole vocabulary, right-padded attention masks,
   two token types): the pruned model against the original with the removed channels zeroed
   (``onnxprune.validate.masked_model``), relative error ``max|a - b| / max|b|`` <= 1e-4;
3. times original and pruned interleaved with
   ``onnxprune.bench.benchmark(orig, pruned, runs=..., threads=2, batch=b, input_shapes=...)`` at
   (batch 1, sequence 128) and (batch 8, sequence 128).

The export's dynamic sequence axis was declared with ``Dim("sequence", max=64)``, so before timing at
128 tokens the script checks the ONNX file against torch at the benchmark shapes (in the torch venv,
rebuilding the same seeded weights with make_transformers.build); ``--no-torch-check`` skips this.

It writes benchmarks/transformer_speed.md (tables, machine, load average, command) and, with
``--json``, every figure to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from machine import cpu_model, load_average, ram_gib

import onnxprune
from onnxprune.bench import benchmark
from onnxprune.validate import masked_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MAKE_TRANSFORMERS = REPO / "models" / "transformers" / "make_transformers.py"
DEFAULT_MODEL = Path("/tmp/onnxprune-bench/bert_base_dynamo.onnx")
DEFAULT_TORCH_PYTHON = "/tmp/venv-tv/bin/python"
SETTINGS = ((0.3, 0.3), (0.5, 0.5))  # (head_ratio, ffn_ratio)
PARITY_SHAPES = ((1, 8), (2, 37), (8, 128))  # (batch, sequence)
BENCH_SHAPES = ((1, 128), (8, 128))
VALIDATE_SEQ = 32  # sequence length of onnxprune.validate's random feeds (batches 1 and 2)
TOLERANCE = 1e-4
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
HEAD_DIM = 64
VOCAB = 30522

TORCH_CHECK = r"""
import json, sys
import numpy as np, onnxruntime as ort, torch
sys.path.insert(0, sys.argv[1])
import make_transformers as mt
path, shapes = sys.argv[2], json.loads(sys.argv[3])
wrapper = mt.build(mt.BENCH_SPEC)
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
names = [i.name for i in sess.get_inputs()]
out = []
for k, (b, s) in enumerate(shapes):
    inputs = mt.make_inputs(mt.BENCH_SPEC, b, s, seed=100 + k)
    with torch.no_grad():
        ref = wrapper(**inputs).numpy()
    got = sess.run(None, {n: inputs[n].numpy() for n in names})[0]
    diff = float(np.abs(got - ref).max())
    out.append({"shape": [b, s], "max_abs_diff": diff, "rel_err": diff / max(1.0, float(np.abs(ref).max()))})
print("RESULT " + json.dumps({"torch": torch.__version__, "checks": out}))
"""


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "onnxprune": onnxprune.__version__,
    }


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def regenerate_command(path: Path, torch_python: str) -> list[str]:
    """The export command, run from the repository root."""
    return [torch_python, str(MAKE_TRANSFORMERS.relative_to(REPO)), "--bench", str(path)]


def ensure_model(path: Path, regenerate: bool, torch_python: str) -> str | None:
    """Export the model when asked or missing; returns the command run (None if the file was reused)."""
    if path.exists() and not regenerate:
        return None
    cmd = regenerate_command(path, torch_python)
    print("exporting:", "HF_HUB_OFFLINE=1", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return "HF_HUB_OFFLINE=1 " + shlex.join(cmd)


def torch_check(path: Path, torch_python: str, shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """ORT on `path` against torch (same seeded weights) at `shapes`, run in the torch venv."""
    cmd = [torch_python, "-c", TORCH_CHECK, str(MAKE_TRANSFORMERS.parent), str(path), json.dumps(shapes)]
    proc = subprocess.run(
        cmd, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"torch check failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def realistic_feeds(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids over the vocabulary, row r > 0 right-padded by min(3r, seq - 1) tokens (id 0,
    mask 0), token type 0 for the first half and 1 for the second."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for r in range(1, batch):
        pad = min(3 * r, seq - 1)
        if pad:
            mask[r, seq - pad :] = 0
            ids[r, seq - pad :] = 0
    types = np.zeros((batch, seq), dtype=np.int64)
    types[:, seq // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def session(model: str | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def realistic_parity(original: onnx.ModelProto, pruned_path: Path, plan: onnxprune.Plan) -> list[dict]:
    """Pruned vs masked original on realistic feeds at PARITY_SHAPES."""
    reference = session(masked_model(original, plan).SerializeToString())
    pruned = session(str(pruned_path))
    rows = []
    for k, (b, s) in enumerate(PARITY_SHAPES):
        feeds = realistic_feeds(b, s, seed=10 + k)
        ref = reference.run(None, feeds)[0].astype(np.float64)
        got = pruned.run(None, feeds)[0].astype(np.float64)
        if ref.shape != got.shape:
            rows.append({"shape": [b, s], "ok": False, "detail": f"shape {got.shape} != {ref.shape}"})
            continue
        diff = float(np.abs(ref - got).max())
        rel = diff / max(1e-6, float(np.abs(ref).max()))
        rows.append(
            {
                "shape": [b, s],
                "output_shape": list(got.shape),
                "max_abs": diff,
                "rel_err": rel,
                "ok": rel <= TOLERANCE,
            }
        )
    return rows


def layer_widths(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Kept heads (query bias width / 64) and FFN width (intermediate bias) of every layer."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    heads, ffn = [], []
    layer = 0
    while f"model.encoder.layer.{layer}.attention.self.query.bias" in dims:
        heads.append(dims[f"model.encoder.layer.{layer}.attention.self.query.bias"][0] // HEAD_DIM)
        ffn.append(dims[f"model.encoder.layer.{layer}.intermediate.dense.bias"][0])
        layer += 1
    return {"heads": heads, "ffn": ffn}


def compact(values: list[int]) -> str:
    return f"{values[0]} in all {len(values)} layers" if len(set(values)) == 1 else str(values)


# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------


def run_setting(
    model_path: Path, original: onnx.ModelProto, head_ratio: float, ffn_ratio: float, args: argparse.Namespace
) -> dict[str, Any]:
    tag = f"h{round(head_ratio * 100)}_f{round(ffn_ratio * 100)}"
    out_path = args.work_dir / f"{model_path.stem}_{tag}.onnx"
    entry: dict[str, Any] = {"head_ratio": head_ratio, "ffn_ratio": ffn_ratio, "pruned_path": str(out_path)}
    print(f"\n== head_ratio {head_ratio}, ffn_ratio {ffn_ratio}", flush=True)
    start = time.perf_counter()
    result = onnxprune.prune(str(model_path), head_ratio=head_ratio, ffn_ratio=ffn_ratio)
    entry["prune_s"] = time.perf_counter() - start
    start = time.perf_counter()
    result.save(out_path, force=True)
    entry["save_s"] = time.perf_counter() - start
    rep = result.report
    entry["report"] = {
        k: getattr(rep, k)
        for k in (
            "groups_found",
            "groups_prunable",
            "groups_pruned",
            "groups_pinned",
            "params_before",
            "params_after",
            "tensors_sliced",
            "rewrites",
            "prunable_macs_fraction",
        )
    }
    entry["widths_before"] = layer_widths(original)
    entry["widths_after"] = layer_widths(result.model)
    print(
        f"  prune {entry['prune_s']:.1f} s, save {entry['save_s']:.1f} s; params {rep.params_before:,} -> "
        f"{rep.params_after:,}; heads {compact(entry['widths_after']['heads'])}, "
        f"FFN {compact(entry['widths_after']['ffn'])}",
        flush=True,
    )

    shapes = {name: [1, VALIDATE_SEQ] for name in INPUTS}
    report = onnxprune.validate(original, result.model, result.plan, input_shapes=shapes)
    entry["validate_ok"] = bool(report)
    entry["validate"] = str(report)
    print("  " + str(report).replace("\n", "\n  "), flush=True)
    entry["parity"] = realistic_parity(original, out_path, result.plan)
    for row in entry["parity"]:
        print(
            f"  parity {row['shape']}: rel err {row.get('rel_err', float('nan')):.2e} ok={row['ok']}",
            flush=True,
        )
    del result

    entry["bench"] = []
    for batch, seq in BENCH_SHAPES:
        before = load_average()
        bench = benchmark(
            str(model_path),
            str(out_path),
            runs=args.runs,
            warmup=args.warmup,
            threads=args.threads,
            batch=batch,
            input_shapes={name: [batch, seq] for name in INPUTS},
        )
        after = load_average()
        print(f"  load {before} -> {after}\n  " + str(bench).replace("\n", "\n  "), flush=True)
        entry["bench"].append(
            {
                "batch": batch,
                "seq": seq,
                "load_before": before,
                "load_after": after,
                "report": bench.to_json(),
            }
        )
    return entry


def fmt_macs(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f} G"


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# BERT-base: what pruning heads and FFN width buys in ONNX Runtime (CPU)",
        "",
        "Measured by `benchmarks/transformer_speed.py`. Command (from the repository root):",
        "",
        "```sh",
        data["command"],
        "```",
        "",
        "The model, when missing, is made first with the torch venv (the script does this itself):",
        "",
        "```sh",
        data["regenerate_command"],
        "```",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['ram_gib']:.1f} GiB RAM; {m['platform']}",
        f"- Python {m['python']}, onnxruntime {m['onnxruntime']} (CPUExecutionProvider), onnx {m['onnx']}, "
        f"numpy {m['numpy']}, onnxprune {m['onnxprune']}",
        f"- sessions: `onnxprune.bench.benchmark`, {data['threads']} intra-op threads, 1 inter-op, "
        "ORT_ENABLE_ALL, spinning off; original and pruned interleaved A B A B on the same random "
        f"feeds; {data['runs']} timed runs after {data['warmup']} warm-up per model and shape",
        f"- load average (1, 5, 15 min) at start {data['load_start']}, at end {data['load_end']}; "
        "per measurement below. The 2 cores are shared with other jobs: the load was well above 2 "
        "for the whole run, so absolute latencies are inflated and noisy; the interleaving makes "
        "both models share the same conditions, so the speedups are the more reliable figures.",
        "",
        "## Model",
        "",
        f"`{data['model']}` ({data['model_bytes'] / 1e6:.0f} MB): `BertModel(add_pooling_layer=False)`, "
        "bert-base-uncased config (12 layers, hidden 768, 12 heads x 64, FFN 3072, vocab 30522), random "
        "seeded weights, SDPA attention, exported by `make_transformers.py --bench` (dynamo, opset 18, "
        "dynamic batch and sequence). Inputs `input_ids`, `attention_mask`, `token_type_ids`, output "
        "`last_hidden_state`.",
        "",
    ]
    tc = data.get("torch_check")
    if tc:
        errs = ", ".join(f"{c['shape'][0]}x{c['shape'][1]}: {c['rel_err']:.1e}" for c in tc["checks"])
        lines += [
            'The export declared `Dim("sequence", max=64)`; the file was checked against torch '
            f"{tc['torch']} (same seeded weights rebuilt with `make_transformers.build`) at the "
            f"benchmark shapes, relative error `max|ort - torch| / max(1, max|torch|)`: {errs}.",
            "",
        ]
    elif data.get("torch_check_error"):
        lines += [f"Torch check FAILED: `{data['torch_check_error'][:300]}`", ""]
    lines += [
        "## Pruning and parity",
        "",
        "`onnxprune.prune(model, head_ratio=R_h, ffn_ratio=R_f)`, other options default (criterion l1, "
        "round_to 8: the FFN width is rounded to a multiple of 8, head counts never are). Prune time is "
        "`prune()` alone (load, normalize, analyze, score, slice); save is `result.save()`.",
        "",
        "| head_ratio | ffn_ratio | heads kept / layer | FFN kept / layer | params | prune (s) | save (s) "
        "| `onnxprune.validate` | parity, realistic feeds (batch x seq: rel err) |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for e in data["settings"]:
        if "error" in e:
            lines.append(f"| {e['head_ratio']} | {e['ffn_ratio']} | FAILED: {e['error'].splitlines()[-1]} |")
            continue
        r = e["report"]
        parity = "; ".join(
            f"{p['shape'][0]}x{p['shape'][1]}: {p['rel_err']:.1e}" + ("" if p["ok"] else " FAIL")
            for p in e["parity"]
        )
        lines.append(
            f"| {e['head_ratio']} | {e['ffn_ratio']} | {compact(e['widths_after']['heads'])} | "
            f"{compact(e['widths_after']['ffn'])} | {r['params_before'] / 1e6:.2f} M -> "
            f"{r['params_after'] / 1e6:.2f} M | {e['prune_s']:.1f} | {e['save_s']:.1f} | "
            f"{'passed' if e['validate_ok'] else 'FAILED'} | {parity} |"
        )
    lines += [
        "",
        "`onnxprune.validate`: onnx.checker (full), ONNX Runtime load and run, graph I/O shapes, every "
        "plan slice, and parity against the masked original on onnxprune's random feeds (seeds 0-2, "
        f"batches 1 and 2, sequence {VALIDATE_SEQ}). The realistic feeds are token ids over the whole "
        "vocabulary, right-padded attention masks (row r loses 3r tokens) and two token types; relative "
        f"error `max|pruned - masked| / max|masked|`, tolerance {TOLERANCE:g}.",
        "",
        "## Latency",
        "",
        "MACs count MatMul/Gemm (attention score and context MatMuls included) at the fed shape; ideal "
        "speedup = MACs ratio; realised = speedup / ideal. Latency is the median of the timed runs.",
        "",
        "| head_ratio | ffn_ratio | batch x seq | params | MACs | latency orig (ms) | latency pruned (ms) "
        "| p90 orig / pruned (ms) | speedup | ideal | realised | load before -> after |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for e in data["settings"]:
        for b in e.get("bench", []):
            r = b["report"]
            lat = r["latency"]
            lines.append(
                f"| {e['head_ratio']} | {e['ffn_ratio']} | {b['batch']} x {b['seq']} | "
                f"{r['params'][0] / 1e6:.2f} M -> {r['params'][1] / 1e6:.2f} M | "
                f"{fmt_macs(r['macs'][0])} -> {fmt_macs(r['macs'][1])} | {lat[0]['median_ms']:.1f} | "
                f"{lat[1]['median_ms']:.1f} | {lat[0]['p90_ms']:.1f} / {lat[1]['p90_ms']:.1f} | "
                f"{fmt_ratio(r['speedup'])}x | {fmt_ratio(r['ideal_speedup'])}x | "
                f"{fmt_ratio(r['realised_fraction'])} | {b['load_before'][0]} -> {b['load_after'][0]} |"
            )
    if data.get("failures"):
        lines += ["", "## Failures", ""]
        for f in data["failures"]:
            lines += ["```", f.rstrip(), "```"]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--regenerate", action="store_true", help="re-export the model first")
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON, help="python of the torch venv")
    parser.add_argument("--no-torch-check", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None, help="pruned models (default: model's dir)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "transformer_speed.md")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir or args.model.parent
    args.work_dir.mkdir(parents=True, exist_ok=True)

    data: dict[str, Any] = {
        "command": shlex.join([sys.executable, "benchmarks/transformer_speed.py", *(argv or sys.argv[1:])]),
        "regenerate_command": "HF_HUB_OFFLINE=1 "
        + shlex.join(regenerate_command(args.model, args.torch_python)),
        "machine": machine(),
        "load_start": load_average(),
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": args.threads,
        "model": str(args.model),
        "settings": [],
        "failures": [],
    }
    data["regenerated_with"] = ensure_model(args.model, args.regenerate, args.torch_python)
    data["model_bytes"] = args.model.stat().st_size
    if not args.no_torch_check:
        try:
            data["torch_check"] = torch_check(args.model, args.torch_python, list(BENCH_SHAPES))
            print("torch check:", data["torch_check"], flush=True)
        except Exception:
            data["torch_check_error"] = traceback.format_exc()
            data["failures"].append(data["torch_check_error"])
            print(data["torch_check_error"], flush=True)
    original = onnx.load(str(args.model))
    for head_ratio, ffn_ratio in SETTINGS:
        try:
            data["settings"].append(run_setting(args.model, original, head_ratio, ffn_ratio, args))
        except Exception:
            tb = traceback.format_exc()
            print(tb, flush=True)
            data["settings"].append({"head_ratio": head_ratio, "ffn_ratio": ffn_ratio, "error": tb})
            data["failures"].append(tb)
    data["load_end"] = load_average()
    text = markdown(data)
    args.out.write_text(text)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    ok = not data["failures"] and all(
        e.get("validate_ok") and all(p["ok"] for p in e.get("parity", [])) for e in data["settings"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
