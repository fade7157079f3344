"""Shared fixtures: the reference models and a helper that builds tiny models from ONNX text."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
ORACLE = ROOT.parent / "shared" / "tools" / "plan_oracle.py"


def reference_models() -> list[Path]:
    """Every reference model listed in models/PROVENANCE.json."""
    provenance = json.loads((MODELS / "PROVENANCE.json").read_text())
    return [MODELS / name for name in sorted(provenance)]


def parse(text: str) -> onnx.ModelProto:
    """An ONNX model from its text form, checked."""
    model = onnx.parser.parse_model(text)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture
def tmp_models(tmp_path: Path) -> Path:
    return tmp_path
