"""The PyTorch modules behind the checked-in exports, rebuilt for the round-trip tests.

Each make script in models/ builds its modules deterministically (fixed seed, then the same
perturbation) before exporting; importing the script and calling its ``build`` gives the module
whose weights the checked-in ONNX file holds. `Case.check_source` confirms that, so a round-trip
test never runs on a module that is not the file's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from tests.conftest import MODELS

TV = MODELS / "torchvision"
TF = MODELS / "transformers"
SOURCE_TOLERANCE = 1e-4  # the make scripts' own check of a file against its module


def make_script(path: Path) -> ModuleType:
    """Import a models/ make script as a module (once)."""
    name = f"_make_{path.parent.name}_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))  # make_untrained imports make_models beside it
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
    return sys.modules[name]


def ort_run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@dataclass
class Case:
    """A module, the checked-in export of it, and inputs (torch keywords or positional)."""

    name: str
    module: nn.Module
    path: Path
    inputs: dict[str, torch.Tensor] | tuple[torch.Tensor, ...]

    def torch_out(self) -> np.ndarray:
        with torch.no_grad():
            if isinstance(self.inputs, dict):
                return self.module(**self.inputs).numpy()
            return self.module(*self.inputs).numpy()

    def feeds(self, model: onnx.ModelProto | Path) -> dict[str, np.ndarray]:
        proto = onnx.load(str(model), load_external_data=False) if isinstance(model, Path) else model
        names = [i.name for i in proto.graph.input]
        if isinstance(self.inputs, dict):
            return {k: v.numpy() for k, v in self.inputs.items()}
        return {n: t.numpy() for n, t in zip(names, self.inputs, strict=False)}

    def onnx_out(self, model: onnx.ModelProto | Path) -> np.ndarray:
        return ort_run(model, self.feeds(model))[0]

    def check_source(self) -> None:
        err = rel_err(self.torch_out(), self.onnx_out(self.path))
        where = f"{self.name}: rebuilt module differs from {self.path.name}"
        assert err < SOURCE_TOLERANCE, f"{where} ({err:.1e})"


def _image(shape: tuple[int, ...], seed: int = 5) -> tuple[torch.Tensor, ...]:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)),)


def torchvision_case(arch: str, exporter: str) -> Case:
    tv = make_script(TV / "make_torchvision.py")
    shape = (2, *tv.input_shape(arch)[1:])
    return Case(f"{arch}_{exporter}", tv.build(arch), TV / f"{arch}_{exporter}.onnx", _image(shape))


def reference_case(arch: str, exporter: str) -> Case:
    mm = make_script(MODELS / "make_models.py")
    if arch in ("inception_fresh", "resnet_zero_init"):
        mu = make_script(MODELS / "make_untrained.py")
        torch.manual_seed(mu.SEED)
        module = mu.MODELS[arch]().eval()
    else:
        module = mm.build(arch)
    name = "default.onnx" if arch == "default" else f"{arch}_{exporter}.onnx"
    return Case(f"{arch}_{exporter}", module, MODELS / name, _image((2, *mm.INPUT_SHAPE[1:])))


def transformers_case(name: str, exporter: str) -> Case:
    tf = make_script(TF / "make_transformers.py")
    provenance = json.loads((TF / "PROVENANCE.json").read_text())[f"{name}_{exporter}.onnx"]
    spec = tf.SPECS[name]
    module = tf.build(spec, provenance["attn_implementation"])
    inputs = tf.make_inputs(spec, 2, 8, seed=11)
    return Case(f"{name}_{exporter}", module, TF / f"{name}_{exporter}.onnx", inputs)


def torch_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, to show a module was left untouched."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
