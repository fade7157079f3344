"""The sha256 of the plan onnxprune writes for every model in models/, at fixed settings.

`tests/data/plan_hashes.json` holds them as recorded before the pipeline was restructured
(issue 13); `tests/test_plan_hashes.py` keeps every one byte-identical. Re-record only when a
change is *meant* to change plans, and say why in the commit:

    python -m tests.plan_hashes --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import onnxprune

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
HASHES = Path(__file__).resolve().parent / "data" / "plan_hashes.json"

SETTINGS: dict[str, dict[str, float]] = {
    "r0.3": {"ratio": 0.3},
    "r0.6": {"ratio": 0.6},
}
"""Settings every model is pruned at."""

TRANSFORMER_SETTINGS: dict[str, dict[str, float]] = {
    "h0.25-f0.5": {"head_ratio": 0.25, "ffn_ratio": 0.5},
    "h0.5-f0.2": {"head_ratio": 0.5, "ffn_ratio": 0.2},
}
"""Head and FFN ratios apart, for the models under models/transformers/."""


def cases() -> list[tuple[str, str, dict[str, float]]]:
    """(model path relative to the repository, setting name, keyword arguments of `prune`)."""
    found = []
    for path in sorted(MODELS.rglob("*.onnx")):
        rel = path.relative_to(ROOT).as_posix()
        settings = dict(SETTINGS)
        if path.parent.name == "transformers":
            settings.update(TRANSFORMER_SETTINGS)
        found += [(rel, name, kwargs) for name, kwargs in settings.items()]
    return found


def plan_sha256(rel: str, kwargs: dict[str, float], tmp: Path) -> str:
    """The sha256 of the plan file `prune` writes for one case."""
    result = onnxprune.prune(ROOT / rel, **kwargs)
    out = tmp / "plan.json"
    result.plan.save(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {HASHES.relative_to(ROOT)}")
    args = parser.parse_args()
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rel, name, kwargs in cases():
            hashes[f"{rel}@{name}"] = plan_sha256(rel, kwargs, Path(tmp))
            print(name, rel, hashes[f"{rel}@{name}"][:12], flush=True)
    if args.write:
        HASHES.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
