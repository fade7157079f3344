"""Export small sequence models and a BlazeFace-style detector with both PyTorch ONNX exporters.

The patterns of issue 17 that pinned whole models, each in a model written in plain ``torch.nn``:

* ``lstm_tagger``     Conv1d(16->32) + ReLU, a 2-layer LSTM(32, 48, batch_first), Linear(48, 10) per step;
* ``gru_tagger``      the same with a bidirectional GRU(32, 48) and Linear(96, 10);
* ``rnn_tagger``      the same with a bidirectional tanh RNN(32, 48) (dynamo unrolls it into MatMul/Tanh);
* ``crnn``            a CRNN text recogniser: four Conv2d+BN+ReLU stages with max pooling on a 1x32x96
  image, the height collapsed into features, a 2-layer bidirectional LSTM(128, 64), Linear(128, 37);
* ``blazeface``       a BlazeFace-style backbone: stem conv, five BlazeBlocks (depthwise 5x5 + pointwise,
  residual), three of which widen the identity path with zero channels (``F.pad`` on the channel
  axis, after a 2x2 max pool when the block strides), and a 1x1 head;
* ``byte_cnn``        a byte-level text classifier: ``F.one_hot(bytes, 256)`` into Conv1d(256, 64, 3),
  ReLU, Conv1d(64, 64, 3), ReLU, mean over time, Linear(64, 4). The one-hot vocabulary (256 byte
  values) is an input axis, not a channel.

Each model is seeded (``torch.manual_seed(0)``), then every parameter gets ``0.02 * randn`` and every
BatchNorm random statistics, so no bias is zero and no two tensors are identical (trained models have
neither). Exported twice from the same weights with a dynamic batch axis:

* dynamo:      ``torch.onnx.export(m, (x,), path, dynamo=True, opset_version=18, external_data=False,
  dynamic_shapes=({0: Dim("batch")},))`` -> ``<name>_dynamo.onnx``;
* TorchScript: ``torch.onnx.export(m, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
  output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})``
  -> ``<name>_torchscript.onnx``.

Every file passes ``onnx.checker.check_model(full_check=True)`` and matches torch in ONNX Runtime at
batches 1 and 3 (``max|ort - torch| / max(1, max|torch|) < 1e-4``). Run with a venv that has torch
(not a dependency of onnxprune)::

    /tmp/venv-tv/bin/python models/sequence/make_sequence.py          # every model
    /tmp/venv-tv/bin/python models/sequence/make_sequence.py crnn     # some

It rewrites the files and their entries in ``PROVENANCE.json`` (entries of models not rebuilt stay).
"""

from __future__ import annotations

import collections
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4
MAX_IR_VERSION = 10


class Tagger(nn.Module):
    """Conv1d front end, a recurrent layer, a per-step Linear: [B, 16, T] -> [B, T, 10]."""

    def __init__(self, cell: type[nn.Module], layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(16, 32, 3, padding=1)
        self.rnn = cell(32, 48, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(96 if bidirectional else 48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).transpose(1, 2)
        y, _ = self.rnn(h)
        return self.fc(y)


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CRNN(nn.Module):
    """[B, 1, 32, 96] image -> [B, 24, 37] per-column character logits."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            conv_bn(1, 16),
            nn.MaxPool2d(2),  # 16 x 48
            conv_bn(16, 32),
            nn.MaxPool2d(2),  # 8 x 24
            conv_bn(32, 64),
            nn.MaxPool2d((2, 1)),  # 4 x 24
            conv_bn(64, 32),
            nn.MaxPool2d((2, 1)),  # 2 x 24
        )
        self.rnn = nn.LSTM(64, 64, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(128, 37)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cnn(x)  # [B, 32, 2, 24]
        b, c, h, w = f.shape
        seq = f.reshape(b, c * h, w).permute(2, 0, 1)  # [24, B, 64]
        y, _ = self.rnn(seq)
        return self.fc(y).permute(1, 0, 2)


class BlazeBlock(nn.Module):
    """Depthwise 5x5 + pointwise conv, residual; a wider output pads the identity with zero channels."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride, self.extra = stride, cout - cin
        self.dw = nn.Conv2d(cin, cin, 5, stride=stride, padding=2, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.pw(self.dw(x))
        identity = F.max_pool2d(x, 2) if self.stride == 2 else x
        if self.extra:
            identity = F.pad(identity, (0, 0, 0, 0, 0, self.extra))
        return torch.relu(branch + identity)


class BlazeFace(nn.Module):
    """[B, 3, 64, 64] image -> [B, 6, 8, 8] (a score and a box per cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 5, stride=2, padding=2), nn.ReLU())  # 32 x 32
        self.blocks = nn.Sequential(
            BlazeBlock(24, 24),
            BlazeBlock(24, 28),
            BlazeBlock(28, 32, stride=2),  # 16 x 16
            BlazeBlock(32, 32),
            BlazeBlock(32, 48, stride=2),  # 8 x 8
        )
        self.head = nn.Conv2d(48, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ByteCNN(nn.Module):
    """[B, 40] bytes (int64) -> [B, 4] class logits, through a one-hot encoding of the bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(256, 64, 3)
        self.conv2 = nn.Conv1d(64, 64, 3)
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.one_hot(x, 256).float().transpose(1, 2)
        h = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        return self.fc(h.mean(-1))


SPECS = {
    "lstm_tagger": (lambda: Tagger(nn.LSTM, 2, False), ("float", [16, 20])),
    "gru_tagger": (lambda: Tagger(nn.GRU, 1, True), ("float", [16, 20])),
    "rnn_tagger": (lambda: Tagger(nn.RNN, 1, True), ("float", [16, 20])),
    "crnn": (CRNN, ("float", [1, 32, 96])),
    "blazeface": (BlazeFace, ("float", [3, 64, 64])),
    "byte_cnn": (ByteCNN, ("bytes", [40])),
}

WHAT = {
    "lstm_tagger": "Conv1d(16, 32) + ReLU, 2-layer LSTM(32, 48, batch_first), Linear(48, 10) per step",
    "gru_tagger": "Conv1d(16, 32) + ReLU, bidirectional GRU(32, 48, batch_first), Linear(96, 10) per step",
    "rnn_tagger": "Conv1d(16, 32) + ReLU, bidirectional tanh RNN(32, 48, batch_first), Linear(96, 10) per step",
    "crnn": "CRNN: 4 x (Conv2d 3x3 + BN + ReLU + MaxPool), height into features, 2-layer BiLSTM(64, 64), "
    "Linear(128, 37)",
    "blazeface": "BlazeFace-style: stem conv, 5 BlazeBlocks (dw 5x5 + pw, residual; 3 pad the identity with "
    "zero channels), 1x1 head",
    "byte_cnn": "one_hot(bytes, 256) -> Conv1d(256, 64, 3) -> ReLU -> Conv1d(64, 64, 3) -> ReLU -> mean -> "
    "Linear(64, 4)",
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = SPECS[name][0]()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=gen))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


def example(name: str, batch: int, seed: int) -> torch.Tensor:
    kind, shape = SPECS[name][1]
    gen = torch.Generator().manual_seed(seed)
    if kind == "bytes":
        return torch.randint(0, 256, (batch, *shape), generator=gen)
    return torch.randn((batch, *shape), generator=gen)


def export(model: nn.Module, x: torch.Tensor, exporter: str, path: Path) -> str:
    """Export `model` at `x` to `path` with `exporter`; returns the call, as written in PROVENANCE."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(
                model,
                (x,),
                raw,
                dynamo=True,
                opset_version=18,
                external_data=False,
                dynamic_shapes=({0: batch},),
            )
            call = 'dynamo=True, opset_version=18, external_data=False, dynamic_shapes=({0: Dim("batch")},)'
        else:
            torch.onnx.export(
                model,
                (x,),
                raw,
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
            call = (
                'dynamo=False, opset_version=17, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}'
            )
        proto = onnx.load(raw)
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    onnx.save_model(proto, path)
    return f"torch.onnx.export(model, (x,), path, {call})"


def check(model: nn.Module, name: str, path: Path) -> list[dict]:
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_name = session.get_inputs()[0].name
    found = []
    for batch in (1, 3):
        x = example(name, batch, seed=10 + batch)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {feed_name: x.numpy()})[0]
        diff = float(np.abs(got - want).max())
        rel = diff / max(1.0, float(np.abs(want).max()))
        if rel >= TOLERANCE:
            raise SystemExit(f"{path.name}: batch {batch} differs from torch (rel {rel:.2e})")
        found.append({"batch": batch, "max_abs_diff": diff, "rel_err": rel})
    return found


def main(names: list[str]) -> None:
    provenance_path = HERE / "PROVENANCE.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {}
    for name in names or list(SPECS):
        model = build(name)
        for exporter in ("dynamo", "torchscript"):
            path = HERE / f"{name}_{exporter}.onnx"
            call = export(model, example(name, 2, seed=0), exporter, path)
            checks = check(model, name, path)
            proto = onnx.load(path)
            provenance[path.name] = {
                "name": name,
                "what": WHAT[name],
                "exporter": exporter,
                "export_call": call,
                "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                "ir_version": proto.ir_version,
                "input": {"kind": SPECS[name][1][0], "shape": ["batch", *SPECS[name][1][1]]},
                "parameters": sum(int(np.prod(t.dims)) for t in proto.graph.initializer),
                "op_types": dict(sorted(collections.Counter(n.op_type for n in proto.graph.node).items())),
                "checks": checks,
                "seed": 0,
                "perturbation": "every parameter += 0.02 * randn (torch.Generator seed 1); BatchNorm random "
                "running_mean, running_var, weight, bias",
                "versions": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "onnx": onnx.__version__,
                    "onnxruntime": ort.__version__,
                    "numpy": np.__version__,
                },
            }
            print(path.name, provenance[path.name]["op_types"], flush=True)
    provenance_path.write_text(json.dumps(dict(sorted(provenance.items())), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
