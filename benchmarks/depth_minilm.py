"""Depth against width on a trained sentence encoder: all-MiniLM-L6-v2 with 1 and 2 of its 6
layers dropped, and width pruning at the same MACs; sentence-embedding fidelity.

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/depth_minilm_data.py   # token batches
    /work/venv-depth/bin/python benchmarks/depth_minilm.py [--out benchmarks/depth_minilm.md]

Model: /work/cache-minilm/all_minilm_l6_v2_dynamo.onnx (the trained encoder exported by
minilm_fidelity.py). Data: the batches depth_minilm_data.py writes, the same sentences as
minilm_calibration.py (256 calibration sentences, 200 *other* evaluation sentences). Embeddings:
mean of ``last_hidden_state`` over real tokens, L2-normalised (as minilm_fidelity.py).

Rows:
- depth, branches: ``drop_blocks`` 2 and 4 (as many sublayers as 1 and 2 layers), chosen by
  each criterion (block-influence and drop-fidelity on the calibration sentences, weight-norm
  without data);
- depth, whole layers: the 1 and 2 layers whose two branches have the lowest summed block
  influence, dropped by replaying a plan that lists both branches of each (`prune(plan=...)`);
- width at the same MACs: the uniform ratio (heads and FFN) whose MACs come closest to the
  whole-layer drop's (bisection on l1 prunes), pruned with l1 and no data, and with activation +
  lsq on the calibration sentences (onnxprune's default with data).
Fidelity: cosine between each evaluation sentence's original and pruned embedding (mean, 5th
percentile, min), nearest-neighbour agreement and Spearman correlation of pairwise similarities.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from machine import HERE, cpu_model, git_state, load_average

import onnxprune
from onnxprune.plan import DroppedBranch, Plan

MODEL = Path("/work/cache-minilm/all_minilm_l6_v2_dynamo.onnx")
TOKENS = Path("/tmp/onnxprune-bench/depth/minilm_tokens.npz")


def batches(kind: str) -> list[dict[str, np.ndarray]]:
    with np.load(TOKENS) as data:
        found: dict[int, dict[str, np.ndarray]] = {}
        for key in data.files:
            part, index, name = key.split("/")
            if part == kind:
                found.setdefault(int(index), {})[name] = data[key]
    return [found[i] for i in sorted(found)]


def embed(model: onnx.ModelProto | Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    out = []
    for feed in feeds:
        hidden = sess.run(None, feed)[0]
        mask = feed["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(out)


def fidelity(orig: np.ndarray, got: np.ndarray) -> dict[str, float]:
    cos = (orig * got).sum(axis=1)
    so, sp = orig @ orig.T, got @ got.T
    iu = np.triu_indices(len(orig), k=1)
    ranks = [np.argsort(np.argsort(s[iu])) for s in (so, sp)]
    np.fill_diagonal(so, -np.inf)
    np.fill_diagonal(sp, -np.inf)
    return {
        "cos_mean": float(cos.mean()),
        "cos_p5": float(np.percentile(cos, 5)),
        "cos_min": float(cos.min()),
        "nn_top1": float((so.argmax(axis=1) == sp.argmax(axis=1)).mean()),
        "pairwise_spearman": float(np.corrcoef(*ranks)[0, 1]),
    }


def measure(label: str, result, reference: np.ndarray, evaluation, seconds: float) -> dict:
    r = result.report
    return {
        "setting": label,
        "macs": r.macs_after / r.macs_before,
        "params": r.params_after / r.params_before,
        "dropped": [d.add for d in result.plan.dropped],
        "prune_s": round(seconds, 1),
        **fidelity(reference, embed(result.model, evaluation)),
    }


def timed(**kwargs):
    start = time.perf_counter()
    result = onnxprune.prune(str(MODEL), **kwargs)
    return result, time.perf_counter() - start


def layers_by_influence(calib) -> list[list[dict]]:
    """Each layer's two branches (graph order: attention, MLP) with their block influence,
    lowest summed influence first."""
    report = onnxprune.prune(str(MODEL), drop_blocks=1, calibration=calib, holdout=0.0).report
    found = report.depth["candidates"]
    layers = [found[i : i + 2] for i in range(0, len(found), 2)]
    return sorted(layers, key=lambda pair: sum(c["score"] for c in pair))


def whole_layers(layers: list[list[dict]], count: int, adds: dict[str, DroppedBranch]) -> Plan:
    return Plan(dropped=tuple(adds[c["add"]] for pair in layers[:count] for c in pair))


def ratio_at(macs: float) -> float:
    """The uniform ratio (heads and FFN) whose MACs fraction is closest to `macs`, by bisection
    on l1 prunes: the kept counts, hence the MACs, depend on the ratio, not on the criterion."""
    low, high, best = 0.0, 0.95, (1.0, 0.0)
    for _ in range(8):
        ratio = (low + high) / 2
        report = onnxprune.prune(str(MODEL), ratio=ratio, criterion="l1").report
        got = report.macs_after / report.macs_before
        if abs(got - macs) < abs(best[0] - macs):
            best = (got, ratio)
        low, high = (ratio, high) if got > macs else (low, ratio)
    return best[1]


def run() -> list[dict]:
    calib, evaluation = batches("calib"), batches("eval")
    reference = embed(MODEL, evaluation)
    rows = []

    def add(label: str, result, seconds: float) -> dict:
        rows.append(measure(label, result, reference, evaluation, seconds))
        print(json.dumps(rows[-1]), flush=True)
        return rows[-1]

    data = {"calibration": calib, "holdout": 0.0}
    for count in (2, 4):
        for criterion, extra in (("block-influence", data), ("drop-fidelity", data), ("weight-norm", {})):
            result, seconds = timed(drop_blocks=count, depth_criterion=criterion, **extra)
            add(f"depth: {count} branches, {criterion}", result, seconds)
    layers = layers_by_influence(calib)
    every = onnxprune.prune(str(MODEL), drop_blocks=12).plan.dropped
    adds = {d.add: d for d in every}
    for count in (1, 2):
        result, seconds = timed(plan=whole_layers(layers, count, adds))
        row = add(f"depth: {count} whole layer(s), block-influence", result, seconds)
        ratio = ratio_at(row["macs"])
        for label, kwargs in (("l1, no data", {"criterion": "l1"}), ("activation + lsq", data)):
            width, seconds = timed(ratio=ratio, **kwargs)
            add(f"width ratio {ratio:.3f} ({label}), same MACs", width, seconds)
    return rows


def markdown(rows: list[dict], argv: list[str]) -> str:
    lines = [
        "# Depth against width: all-MiniLM-L6-v2 (trained), sentence-embedding fidelity",
        "",
        f"Command: `python benchmarks/depth_minilm.py {' '.join(argv)}` (after depth_minilm_data.py); "
        f"code {git_state()}; {cpu_model()}, load average {load_average()}.",
        "",
        "Evaluation: 200 template sentences not used for calibration (256 others). Cosine between "
        "each sentence's original and pruned embedding; nn top-1: the nearest neighbour in the set "
        "stays the same; Spearman: of all pairwise similarities. MACs and params: fraction kept "
        "(MACs counted at sequence length 1, as onnxprune reports them). A layer is two branches.",
        "",
        "| setting | MACs kept | params kept | cos mean | cos p5 | cos min | nn top-1 | Spearman "
        "| prune s | dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['macs']:.3f} | {r['params']:.3f} | {r['cos_mean']:.4f} "
            f"| {r['cos_p5']:.4f} | {r['cos_min']:.4f} | {r['nn_top1']:.3f} | {r['pairwise_spearman']:.4f} "
            f"| {r['prune_s']} | {', '.join(r['dropped'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "depth_minilm.md")
    args = parser.parse_args(argv)
    rows = run()
    args.out.write_text(markdown(rows, argv))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
