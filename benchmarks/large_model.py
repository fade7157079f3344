"""Memory and time of pruning a model over 2 GB (external data), against onnx.load + onnx.save.

    python benchmarks/large_model.py [--dir /tmp/onnxprune-large] [--size-gb 3] [--ratio 0.4]

Builds a synthetic MLP (a stack of square MatMul + bias + Relu layers, random float32 weights)
whose weights live in one external data file, then runs, each in a fresh Python process:

- ``import onnx, onnxprune`` alone (the interpreter and library baseline);
- ``onnxprune.prune(path, ratio=...).save(out)``: the measured pruning path (no ONNX Runtime session);
- ``onnx.save_model(onnx.load(path), out, save_as_external_data=True)``: the plain round trip.

Peak memory is the child's peak resident set size (``VmHWM`` in /proc, else ``ru_maxrss`` from
``os.wait4``), which counts file pages mapped into the process as well as its own allocations.
Afterwards, and not measured, the pruned model is checked: onnx.checker on the file, every plan
slice against the input's weights, and the pruned model run by ONNX Runtime against the
original computed layer by layer in numpy with the removed channels masked (DESIGN.md, "Parity").
The result is printed and written to benchmarks/large_model.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from machine import cpu_model, ram_gib
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
ALIGN = 1 << 16


def build_model(directory: Path, *, size_gb: float, width: int, seed: int = 0) -> Path:
    """Write ``large.onnx`` + ``large.onnx.data``: ``layers`` x (MatMul [width, width], Add bias,
    Relu), with as many layers as make about `size_gb` GiB of weights. Weights are written to the
    data file one layer at a time, never held together."""
    layers = max(2, round(size_gb * 2**30 / (width * width * 4)))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "large.onnx"
    data_name = "large.onnx.data"
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    with open(directory / data_name, "wb") as data:

        def external(name: str, array: np.ndarray) -> TensorProto:
            pad = -data.tell() % ALIGN
            data.write(b"\0" * pad)
            offset = data.tell()
            data.write(array.tobytes())
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", offset), ("length", array.nbytes)):
                tensor.external_data.add(key=key, value=str(value))
            return tensor

        h = "x"
        for i in range(layers):
            w = rng.standard_normal((width, width), dtype=np.float32)
            w *= np.float32(1.4 / np.sqrt(width))
            inits.append(external(f"layer{i}.weight", w))
            del w
            b = rng.standard_normal(width, dtype=np.float32) * np.float32(0.1)
            inits.append(external(f"layer{i}.bias", b))
            nodes.append(helper.make_node("MatMul", [h, f"layer{i}.weight"], [f"mm{i}"], name=f"MatMul_{i}"))
            out = "y" if i == layers - 1 else f"add{i}"
            nodes.append(helper.make_node("Add", [f"mm{i}", f"layer{i}.bias"], [out], name=f"Add_{i}"))
            if i < layers - 1:
                nodes.append(helper.make_node("Relu", [out], [f"h{i}"], name=f"Relu_{i}"))
                h = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "large_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def model_bytes(path: Path) -> int:
    """Size of a model file plus the external data files it names."""
    proto = onnx.load(path, load_external_data=False)
    files = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files)


# --- children: one job per fresh process, measured by the parent -------------------------------


def child(job: str, src: str, dst: str, ratio: float) -> None:
    import onnxprune

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if job == "prune":
        result = onnxprune.prune(src, ratio=ratio)
        timings["prune_s"] = time.perf_counter() - started
        saved = time.perf_counter()
        result.save(dst)
        timings["save_s"] = time.perf_counter() - saved
        result.plan.save(dst + ".plan.json")
        timings["params_before"] = result.report.params_before
        timings["params_after"] = result.report.params_after
    elif job == "reference":
        model = onnx.load(src)
        timings["load_s"] = time.perf_counter() - started
        saved = time.perf_counter()
        onnx.save_model(
            model,
            dst,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=Path(dst).name + ".data",
        )
        timings["save_s"] = time.perf_counter() - saved
    timings["total_s"] = time.perf_counter() - started
    timings["vm_hwm"] = _vm_hwm()
    print(json.dumps(timings))


def _vm_hwm() -> int | None:
    """This process's peak resident set (VmHWM, Linux), in bytes: counted from its exec, unlike
    ru_maxrss, which also holds the parent's size at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure(job: str, src: Path, dst: Path, ratio: float) -> dict:
    """Run one job in a fresh interpreter; its wall time, peak RSS (bytes) and own timings."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", job, str(src), str(dst), "--ratio", str(ratio)],
        stdout=subprocess.PIPE,
        cwd=src.parent,  # anything a library drops in the working directory stays with the model
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{job} failed with exit code {proc.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    peak = result.pop("vm_hwm") or usage.ru_maxrss * 1024
    return {"job": job, "wall_s": wall, "peak_rss": peak, **result}


# --- the check of the pruned model (after the measurements) ------------------------------------


def check(src: Path, out: Path, width: int) -> dict:
    """onnx.checker, plan slices bit for bit, and ONNX Runtime parity with the masked original."""
    import onnxruntime as ort

    from onnxprune.io import read_model
    from onnxprune.plan import Plan
    from onnxprune.weights import tensor_array

    onnx.checker.check_model(str(out), full_check=True)
    plan = Plan.load(str(out) + ".plan.json")
    original = read_model(src, lazy=True)
    pruned = read_model(out, lazy=True)
    orig_t = {t.name: t for t in original.model.graph.initializer}
    pruned_t = {t.name: t for t in pruned.model.graph.initializer}
    by_tensor: dict[str, list] = {}
    for s in plan.slices:
        by_tensor.setdefault(s.tensor, []).append(s)
    for name, tensor in orig_t.items():
        expected = tensor_array(tensor, original.base_dir)
        for s in sorted(by_tensor.get(name, []), key=lambda s: s.axis):
            expected = np.take(expected, list(s.keep), axis=s.axis)
        got = tensor_array(pruned_t[name], pruned.base_dir)
        if expected.shape != got.shape or not np.array_equal(expected, got):
            raise SystemExit(f"check failed: {name} is not the plan's slice of the original")
        del expected, got
    # the original with every removed "in" index zeroed, computed layer by layer from the memmaps
    masked_in = {
        s.tensor: (s.axis, np.setdiff1d(np.arange(s.size), s.keep)) for s in plan.slices if s.role == "in"
    }
    x = np.random.default_rng(1).standard_normal((2, width), dtype=np.float32)
    h = x.astype(np.float64)
    layers = sum(1 for n in original.model.graph.node if n.op_type == "MatMul")
    for i in range(layers):
        w = np.array(tensor_array(orig_t[f"layer{i}.weight"], original.base_dir), dtype=np.float64)
        if f"layer{i}.weight" in masked_in:
            axis, removed = masked_in[f"layer{i}.weight"]
            if axis == 0:
                w[removed, :] = 0.0
            else:
                w[:, removed] = 0.0
        h = h @ w + np.asarray(tensor_array(orig_t[f"layer{i}.bias"], original.base_dir), dtype=np.float64)
        del w
        if i < layers - 1:
            h = np.maximum(h, 0.0)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    rel = float(np.max(np.abs(y - h)) / max(np.max(np.abs(h)), 1e-30))
    if rel > 1e-4:
        raise SystemExit(f"check failed: parity relative error {rel:.3g} > 1e-4")
    return {"slices_checked": len(plan.slices), "parity_rel_err": rel}


# --- report -----------------------------------------------------------------------------------


def machine() -> str:
    ram = ram_gib()
    ram_text = f"{ram:.1f} GiB RAM" if ram else ""
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, {ram_text}; Linux {platform.release()}"


def report(size: int, layers: int, width: int, ratio: float, runs: list[dict], checked: dict | None) -> str:
    gib = 2**30
    lines = [
        "# Pruning a model over 2 GB: memory and time",
        "",
        "Measured by `benchmarks/large_model.py` (regenerate: `python benchmarks/large_model.py`).",
        "",
        f"- machine: {machine()}",
        f"- Python {platform.python_version()}, onnx {onnx.__version__}, numpy {np.__version__}",
        f"- model: synthetic MLP, {layers} x (MatMul [{width}, {width}] + bias + Relu), float32, "
        f"weights in one external data file; {size / gib:.2f} GiB on disk ({size:,} bytes)",
        f"- pruning: `onnxprune.prune(path, ratio={ratio}).save(out)`, written with external data again",
        "- peak RSS: the child process's peak resident set (`VmHWM`), file pages mapped into the "
        "process included; each job in a fresh interpreter, input file warm in the page cache",
        "",
        "| job | wall time (s) | peak RSS (GiB) | peak RSS / model size |",
        "| --- | ---: | ---: | ---: |",
    ]
    names = {
        "baseline": "`import onnx, onnxprune` only",
        "prune": "onnxprune prune + save",
        "reference": "onnx.load + onnx.save (external data)",
    }
    for run in runs:
        lines.append(
            f"| {names[run['job']]} | {run['wall_s']:.1f} | {run['peak_rss'] / gib:.2f} | "
            f"{run['peak_rss'] / size:.2f} |"
        )
    prune = next(r for r in runs if r["job"] == "prune")
    ref = next((r for r in runs if r["job"] == "reference"), None)
    lines += [
        "",
        f"onnxprune: prune {prune['prune_s']:.1f} s (load, normalize, analyze, score, slice), "
        f"save {prune['save_s']:.1f} s; parameters {prune['params_before']:,} -> "
        f"{prune['params_after']:,} ({prune['params_after'] / prune['params_before']:.0%} kept).",
    ]
    if ref is not None:
        lines.append(f"onnx round trip: load {ref['load_s']:.1f} s, save {ref['save_s']:.1f} s.")
    if checked is not None:
        lines += [
            "",
            f"Checked afterwards (not timed): onnx.checker (full) on the saved file; all "
            f"{checked['slices_checked']} plan slices equal the original's weights at the kept "
            f"indices; ONNX Runtime on the pruned model against the masked original computed in "
            f"numpy: relative error {checked['parity_rel_err']:.2g}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="working directory (default: a temp dir, removed)")
    parser.add_argument("--size-gb", type=float, default=3.0, help="model size in GiB (default 3)")
    parser.add_argument("--width", type=int, default=8192, help="layer width (default 8192)")
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--no-reference", action="store_true", help="skip onnx.load + onnx.save")
    parser.add_argument("--no-check", action="store_true", help="skip checking the pruned model")
    parser.add_argument("--keep", action="store_true", help="keep the files in --dir")
    parser.add_argument("--markdown", type=Path, default=HERE / "large_model.md")
    parser.add_argument("--child", nargs=3, metavar=("JOB", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.ratio)
        return 0
    work = args.dir or Path(tempfile.mkdtemp(prefix="onnxprune-large-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        src = build_model(work, size_gb=args.size_gb, width=args.width)
        size = model_bytes(src)
        layers = sum(1 for n in onnx.load(src, load_external_data=False).graph.node if n.op_type == "MatMul")
        print(
            f"built {src} ({size / 2**30:.2f} GiB, {layers} layers) in {time.perf_counter() - started:.0f} s"
        )
        runs = [measure("baseline", src, work / "none.onnx", args.ratio)]
        runs.append(measure("prune", src, work / "pruned.onnx", args.ratio))
        print(json.dumps(runs[-1]))
        if not args.no_reference:
            runs.append(measure("reference", src, work / "roundtrip.onnx", args.ratio))
            print(json.dumps(runs[-1]))
            for f in ("roundtrip.onnx", "roundtrip.onnx.data"):
                (work / f).unlink(missing_ok=True)
        checked = None if args.no_check else check(src, work / "pruned.onnx", args.width)
        text = report(size, layers, args.width, args.ratio, runs, checked)
        print(text)
        args.markdown.write_text(text)
    finally:
        if not args.keep:
            if args.dir is None:
                shutil.rmtree(work, ignore_errors=True)
            else:
                for name in ("large.onnx", "large.onnx.data", "pruned.onnx", "pruned.onnx.data"):
                    (work / name).unlink(missing_ok=True)
                (work / "pruned.onnx.plan.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
