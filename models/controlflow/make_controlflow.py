"""Export small PyTorch models whose graphs hold control flow (If, Loop) to ONNX.

Models (random weights, BatchNorm statistics and biases perturbed; nothing is downloaded):

* ``stateful_if``: a CNN feature extractor (Conv+BN+ReLU twice, global pool), a projection
  ``Linear(32, 24)`` and a recurrent state: when the ``state`` input is not all zero the new
  state is ``tanh(mix(state) + f)``, else ``f`` (an ``If`` around the state, its then-branch
  reading the ``mix`` weights from the enclosing graph); a head ``Linear(24, 48)+ReLU+Linear(48,
  10)`` reads the new state. Outputs: logits and the new state.
  - ``stateful_if_torchscript.onnx``: ``torch.jit.script`` then ``torch.onnx.export(...,
    dynamo=False, opset_version=17)`` (the Python ``if`` becomes an ``If``); batch dynamic;
  - ``stateful_if_dynamo.onnx``: the same module with ``torch.cond``, ``torch.onnx.export(...,
    dynamo=True, opset_version=18)``.
* ``refine_loop_torchscript.onnx``: a CNN encoder (Conv+ReLU twice, global pool) whose 32
  features are refined ``steps`` times (a graph input) by ``h = tanh(cell(h)) + h`` in a
  ``Loop`` whose body reads ``cell``'s weights from the enclosing graph; a head
  ``Linear(32, 64)+ReLU+Linear(64, 10)``. ``torch.jit.script``, ``dynamo=False``, opset 17.

Checks: ``onnx.checker`` (full) and ONNX Runtime against the PyTorch module on random inputs
(non-zero and zero state; 0 and 3 refinement steps), ``max abs diff < 1e-4``.

Run with a venv holding torch (2.14.1 used) and onnxruntime::

    python models/controlflow/make_controlflow.py
"""

from __future__ import annotations

import collections
import json
import platform
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
TOLERANCE = 1e-4


class StatefulIf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(32, 24)
        self.mix = nn.Linear(24, 24)
        self.head = nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 10))

    def forward(self, x: torch.Tensor, state: torch.Tensor):
        f = torch.relu(self.proj(self.features(x)))
        if bool(state.abs().sum() > 0):  # noqa: SIM108 (a statement: TorchScript exports it as an If)
            s = torch.tanh(self.mix(state) + f)
        else:
            s = f
        return self.head(s), s


class StatefulCond(StatefulIf):
    def forward(self, x: torch.Tensor, state: torch.Tensor):
        f = torch.relu(self.proj(self.features(x)))
        s = torch.cond(
            state.abs().sum() > 0,
            lambda st, g: torch.tanh(self.mix(st) + g),
            lambda st, g: g.clone(),
            (state, f),
        )
        return self.head(s), s


class RefineLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.cell = nn.Linear(32, 32)
        self.head = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor, steps: int):
        h = self.encoder(x)
        for _ in range(steps):
            h = torch.tanh(self.cell(h)) + h
        return self.head(h)


def perturb(model: nn.Module) -> nn.Module:
    torch.manual_seed(SEED)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(c))
                module.bias.copy_(0.1 * torch.randn(c))
                module.running_mean.copy_(0.1 * torch.randn(c))
                module.running_var.copy_(0.5 + torch.rand(c))
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def export_if(path: Path, dynamo: bool) -> list[dict]:
    source = perturb(StatefulIf())
    x, state = torch.randn(2, 3, 32, 32), torch.randn(2, 24)
    names = {"input_names": ["x", "state"], "output_names": ["logits", "new_state"]}
    if dynamo:
        model = StatefulCond().eval()
        model.load_state_dict(source.state_dict())
        batch = torch.export.Dim("batch")
        torch.onnx.export(
            model,
            (x, state),
            str(path),
            dynamo=True,
            opset_version=18,
            external_data=False,
            dynamic_shapes=({0: batch}, {0: batch}),
            **names,
        )
    else:
        torch.onnx.export(
            torch.jit.script(source),
            (x, state),
            str(path),
            dynamo=False,
            opset_version=17,
            dynamic_axes={
                "x": {0: "batch"},
                "state": {0: "batch"},
                "logits": {0: "batch"},
                "new_state": {0: "batch"},
            },
            **names,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for st in (state, torch.zeros_like(state)):
        want = [t.detach().numpy() for t in source(x, st)]
        got = session.run(None, {"x": x.numpy(), "state": st.numpy()})
        assert all(np.abs(g - w).max() < TOLERANCE for g, w in zip(got, want, strict=True)), path.name
    return [{"x": [1, 3, 32, 32], "state": [1, 24]}]


def export_loop(path: Path) -> list[dict]:
    source = perturb(RefineLoop())
    x = torch.randn(2, 3, 16, 16)
    torch.onnx.export(
        torch.jit.script(source),
        (x, 3),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x", "steps"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for steps in (0, 3):
        want = source(x, steps).detach().numpy()
        got = session.run(None, {"x": x.numpy(), "steps": np.array(steps, np.int64)})[0]
        assert np.abs(got - want).max() < TOLERANCE, path.name
    return [{"x": [1, 3, 16, 16], "steps": []}]


def describe(path: Path, call: str) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {
        "export_call": call,
        "nodes": len(model.graph.node),
        "op_types": dict(sorted(counts.items())),
        "size_bytes": path.stat().st_size,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }


def main() -> int:
    provenance = {}
    path = HERE / "stateful_if_torchscript.onnx"
    export_if(path, dynamo=False)
    provenance[path.name] = describe(
        path, "torch.onnx.export(torch.jit.script(m), ..., dynamo=False, opset_version=17)"
    )
    path = HERE / "stateful_if_dynamo.onnx"
    export_if(path, dynamo=True)
    provenance[path.name] = describe(
        path, "torch.onnx.export(m (torch.cond), ..., dynamo=True, opset_version=18)"
    )
    path = HERE / "refine_loop_torchscript.onnx"
    export_loop(path)
    provenance[path.name] = describe(
        path, "torch.onnx.export(torch.jit.script(m), (x, 3), dynamo=False, opset_version=17)"
    )
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
