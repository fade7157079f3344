"""Regenerate the reference CNN models in this folder with the real PyTorch ONNX exporters.

Every architecture below is written in plain ``torch.nn`` (no torchvision), initialised with a fixed
seed, and then perturbed: each parameter gets a small random offset and each BatchNorm gets random
running statistics and affine parameters.  Without that, fresh modules have all-zero biases and
identical tensors, which the exporters merge or delete, so the graphs would not look like the ones
users' trained models produce.

Each model is exported with

* the dynamo exporter:      ``torch.onnx.export(..., dynamo=True, opset_version=18, dynamic_shapes=...)``
  -> ``<arch>_dynamo.onnx``
* the TorchScript exporter: ``torch.onnx.export(..., dynamo=False, opset_version=17, dynamic_axes=...)``
  -> ``<arch>_torchscript.onnx``

with a 1x3x32x32 float32 example input whose batch dimension is dynamic.  ``default.onnx`` (the model
the README demo prunes) is exported with dynamo only.  Files are saved self-contained (no external
data) and with IR version <= 10 so that older ONNX Runtime releases load them; nothing else in the
exported graph is changed.

Afterwards every file is checked (``onnx.checker.check_model(full_check=True)``), run in ONNX Runtime
(CPUExecutionProvider) on a batch of 2 and compared with the torch output (max abs diff < 1e-4).  A
table of the files is printed, ``PROVENANCE.json`` is rewritten and the generated section of
``README.md`` is refreshed.

Run it from a separate venv (torch is not a dependency of onnxprune)::

    python -m venv /tmp/venv-export
    /tmp/venv-export/bin/pip install torch==2.13.0 onnx onnxscript onnxruntime numpy
    /tmp/venv-export/bin/python models/make_models.py

Versions used for the checked-in files: Python 3.11.7, torch 2.13.0+cpu, onnx 1.23.2,
onnxscript 0.7.2, onnx-ir 1.1.0, onnxruntime 1.32.0, numpy 2.4.6.
"""

from __future__ import annotations

import collections
import json
import logging
import platform
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10
MAX_IR_VERSION = 10
DYNAMO_OPSET = 18
TORCHSCRIPT_OPSET = 17
TOLERANCE = 1e-4
SEED = 0


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """ResNet BasicBlock; with ``stride != 1`` or a channel change it has a conv1x1+BN downsample."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 project + BN."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            *conv_bn(cin, hidden, 1),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, cout, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 16, 3, 2),
            nn.ReLU6(inplace=True),
            InvertedResidual(16, 16, 1, 3),  # residual
            InvertedResidual(16, 24, 2, 4),  # stride 2, no residual
            InvertedResidual(24, 24, 1, 4),  # residual
            *conv_bn(24, 64, 1),
            nn.ReLU6(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3; the ``growth`` new channels are concatenated to the input."""

    def __init__(self, cin: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not in-place: the pre-activation BN must not overwrite x, which is concatenated below
        new = self.conv1(torch.relu(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        return torch.cat([x, new], 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block = nn.Sequential(DenseLayer(16, growth), DenseLayer(24, growth), DenseLayer(32, growth))
        self.transition = nn.Sequential(
            nn.BatchNorm2d(40), nn.ReLU(inplace=True), nn.Conv2d(40, 20, 1, bias=False), nn.AvgPool2d(2, 2)
        )
        self.norm = nn.BatchNorm2d(20)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(20, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition(self.block(self.stem(x)))
        x = torch.relu(self.norm(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(*conv_bn(3, 16, 3, 2), nn.Hardswish(), SqueezeExcite(16, 8))
        self.stage2 = nn.Sequential(*conv_bn(16, 32, 3, 2), nn.Hardswish(), SqueezeExcite(32, 8))
        self.head = nn.Sequential(*conv_bn(32, 64, 1), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stage2(self.stage1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ConvBNSiLU(nn.Module):
    """The YOLOv8 ``Conv``: conv (no bias) + BN + SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, groups: int = 1) -> None:
        super().__init__()
        self.cv1 = ConvBNSiLU(c, c, 3)
        self.cv2 = ConvBNSiLU(c, c, 3, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLOv8 C2f: cv1, chunk(2, 1), bottlenecks appended to the list, cat, cv2."""

    def __init__(self, cin: int, cout: int, n: int = 2) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBNSiLU(cin, 2 * self.c, 1)
        self.cv2 = ConvBNSiLU((2 + n) * self.c, cout, 1)
        # the second bottleneck's second conv is a grouped conv (groups=4)
        self.m = nn.ModuleList(Bottleneck(self.c, groups=1 if i == 0 else 4) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C2fNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNSiLU(3, 16, 3, 2)
        self.down = ConvBNSiLU(16, 32, 3, 2)
        self.c2f = C2f(32, 32, n=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c2f(self.down(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class FlattenGemm(nn.Module):
    """conv-bn-relu-maxpool x2, then flatten of the 4-D map: the first Linear reads 16*8*8 features."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            *conv_bn(8, 16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(16 * 8 * 8, 32)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.fc2(self.relu(self.fc1(x)))


class ConvTransposeNet(nn.Module):
    """Tiny segmentation-style net: conv s2 -> ConvTranspose2d s2 -> BN -> ReLU -> conv (N,5,32,32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.relu1 = nn.ReLU(inplace=True)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(8, 5, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        return self.head(self.relu2(self.bn(self.up(x))))


class DepthwiseSeparable(nn.Module):
    """MobileNetV1-style block: 3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Sequential(*conv_bn(cin, cin, 3, stride, groups=cin), nn.ReLU(inplace=True))
        self.pw = nn.Sequential(*conv_bn(cin, cout, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DefaultNet(nn.Module):
    """The README demo model: a small ResNet with a depthwise-separable stage (~120k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 24), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(24, 24)
        self.layer2 = BasicBlock(24, 48, stride=2)
        self.layer3 = BasicBlock(48, 64, stride=2)
        self.dws = DepthwiseSeparable(64, 128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(128, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dws(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


# arch name -> (constructor, exporters, description, patterns exercised)
ARCHS: dict[str, tuple[type[nn.Module], tuple[str, ...], str, str]] = {
    "resnet": (
        ResNet,
        ("dynamo", "torchscript"),
        "ResNet-style: stem conv+BN+ReLU, BasicBlock(16), BasicBlock(16->32, stride 2, conv1x1+BN "
        "downsample), global average pool, flatten, Linear(32, 10).",
        "residual Add joining two conv outputs (the downsample branch and the main path must keep the "
        "same channels); identity residual; Conv+BN folding; GlobalAveragePool -> Flatten/Reshape -> Gemm.",
    ),
    "mobilenetv2": (
        MobileNetV2,
        ("dynamo", "torchscript"),
        "MobileNetV2-style: stem conv s2 + BN + ReLU6, three inverted residual blocks (16->16 t=3 "
        "residual, 16->24 t=4 stride 2, 24->24 t=4 residual), conv1x1 24->64, pool, Dropout, Linear.",
        "depthwise conv (group = channels) tied to the expand conv's outputs; ReLU6 as Clip; residual "
        "Add only where stride 1 and same channels; the project conv has no activation.",
    ),
    "densenet": (
        DenseNet,
        ("dynamo", "torchscript"),
        "DenseNet-style: stem conv, a dense block of 3 layers (BN-ReLU-conv1x1-BN-ReLU-conv3x3, growth 8, "
        "output concatenated with the input), transition (BN, ReLU, conv1x1 40->20, AvgPool 2), BN, ReLU, "
        "pool, Linear.",
        "Concat along channels feeding later Concats (channel offsets); pre-activation BatchNorm after a "
        "Concat (cannot be folded into a conv); AveragePool.",
    ),
    "se": (
        SENet,
        ("dynamo", "torchscript"),
        "Two stages of conv s2 + BN + Hardswish + squeeze-excitation (global pool -> conv1x1 reduce -> ReLU "
        "-> conv1x1 expand -> Hardsigmoid -> Mul with the input), then conv1x1 32->64 + BN + Hardswish, "
        "pool, Linear.",
        "squeeze-excitation: the SE expand conv's outputs are tied to the channels it gates (Mul broadcast "
        "[N,C,1,1]); HardSwish / HardSigmoid; GlobalAveragePool or ReduceMean inside the graph.",
    ),
    "c2f": (
        C2fNet,
        ("dynamo", "torchscript"),
        "YOLOv8-style: two conv s2 + BN + SiLU, a C2f block (cv1 1x1, chunk(2, 1), two bottlenecks with "
        "residual each appended to the list, cat of 4 parts, cv2 1x1), pool, Linear. The second "
        "bottleneck's second conv is grouped (groups=4).",
        "Split (chunk) of a conv output into halves; Concat of the split outputs and bottleneck outputs; "
        "residual inside bottlenecks reading a split output; grouped conv (groups=4); SiLU as Sigmoid+Mul.",
    ),
    "flatten_gemm": (
        FlattenGemm,
        ("dynamo", "torchscript"),
        "conv-BN-ReLU-MaxPool x2 (8 and 16 channels), torch.flatten of the 16x8x8 map, Linear(1024, 32), "
        "ReLU, Linear(32, 10).",
        "Flatten of a 4-D feature map into a Gemm: pruning a channel of the last conv removes H*W=64 "
        "consecutive input columns of the first Gemm; MaxPool; Gemm -> Relu -> Gemm.",
    ),
    "convtranspose": (
        ConvTransposeNet,
        ("dynamo", "torchscript"),
        "conv 3->16 s2 + ReLU, ConvTranspose2d 16->8 (kernel 2, stride 2, no bias), BN, ReLU, conv 8->5 "
        "(output N x 5 x 32 x 32).",
        "ConvTranspose weight layout [C_in, C_out/group, kH, kW] (output channels on axis 1); "
        "BN after a ConvTranspose; a 4-D model output whose channels must not be pruned.",
    ),
    "default": (
        DefaultNet,
        ("dynamo",),
        "The README demo model: stem conv 3->24, BasicBlocks 24, 24->48 s2, 48->64 s2 (conv1x1+BN "
        "downsamples), depthwise-separable 64->128, pool, Dropout, Linear(128, 10).",
        "residual Adds with and without downsample branches, depthwise conv, Gemm head; a realistic "
        "small classifier to prune end to end.",
    ),
}


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def build(arch: str) -> nn.Module:
    """Construct ``arch`` deterministically, perturb every tensor and return it in eval mode."""
    torch.manual_seed(SEED)
    model = ARCHS[arch][0]()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                module.bias.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))  # in [0.5, 1.5)
        for param in model.parameters():
            # small offsets on top of the initialisation: no zero bias, no two equal tensors
            param.add_(0.02 * torch.randn(param.shape, generator=gen))
    return model.eval()


def check_distinct(model: nn.Module) -> None:
    """Fail when a bias is all zero or two parameters/buffers are identical (exporters merge those)."""
    seen: dict[tuple, str] = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.dtype.is_floating_point:
            if name.endswith("bias"):
                assert t.abs().max() > 0, f"{name} is all zero"
            key = (tuple(t.shape), tuple(t.flatten().tolist()))
            assert key not in seen, f"{name} equals {seen[key]}"
            seen[key] = name


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export(model: nn.Module, exporter: str, path: Path) -> None:
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(SEED + 2))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        if exporter == "dynamo":
            torch.onnx.export(
                model,
                (x,),
                str(raw),
                dynamo=True,
                opset_version=DYNAMO_OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
            )
        else:
            torch.onnx.export(
                model,
                (x,),
                str(raw),
                dynamo=False,
                opset_version=TORCHSCRIPT_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        # onnx.load pulls in any external data, so the file saved below is self-contained
        proto = onnx.load(str(raw))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    onnx.save_model(proto, str(path), save_as_external_data=False)


def verify(model: nn.Module, path: Path) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert proto.ir_version <= MAX_IR_VERSION, proto.ir_version
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer), (
        f"{path.name} has external data"
    )
    assert not list(path.parent.glob(path.name + ".data")), f"{path.name} left a .data file"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn((2, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(SEED + 3))
    with torch.no_grad():
        expected = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape, (got.shape, expected.shape)
    diff = float(np.abs(got - expected).max())
    assert diff < TOLERANCE, f"{path.name}: max abs diff {diff}"
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "nodes": len(proto.graph.node),
        "ops": dict(sorted(counts.items())),
        "size": path.stat().st_size,
        "diff": diff,
        "ir": proto.ir_version,
        "opset": opset,
        "initializers": len(proto.graph.initializer),
        "input": sess.get_inputs()[0].name,
        "output": sess.get_outputs()[0].name,
        "output_shape": [d if isinstance(d, int) else str(d) for d in sess.get_outputs()[0].shape],
    }


def provenance_entry(arch: str, exporter: str, verified: dict, model: nn.Module) -> dict:
    """The PROVENANCE.json record of one exported file (`verified` is what `verify` returned)."""
    return {
        "arch": arch,
        "exporter": exporter,
        "opset": verified["opset"],
        "ir_version": verified["ir"],
        "torch_version": torch.__version__,
        "input_shape": list(INPUT_SHAPE),
        "dynamic_axes": {"0": "batch"},
        "input_name": verified["input"],
        "output_name": verified["output"],
        "output_shape": verified["output_shape"],
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def file_name(arch: str, exporter: str) -> str:
    return "default.onnx" if arch == "default" else f"{arch}_{exporter}.onnx"


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }


def markdown(results: dict[str, dict], vers: dict[str, str]) -> str:
    lines = [
        "### Architectures",
        "",
        "| arch | files | what it is | patterns it exercises |",
        "| --- | --- | --- | --- |",
    ]
    for arch, (_, exporters, what, patterns) in ARCHS.items():
        files = ", ".join(f"`{file_name(arch, e)}`" for e in exporters)
        lines.append(f"| `{arch}` | {files} | {what} | {patterns} |")
    lines += [
        "",
        "### Files",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        "| file | exporter | opset | IR | nodes | initializers | size (bytes) | op types (count) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        ops = ", ".join(f"{op} {n}" for op, n in r["ops"].items())
        lines.append(
            f"| `{name}` | {r['exporter']} | {r['opset']} | {r['ir']} | {r['nodes']} | {r['initializers']} "
            f"| {r['size']} | {ops} |"
        )
    lines.append("")
    lines.append(f"Total size of the .onnx files: {sum(r['size'] for r in results.values())} bytes.")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    readme = HERE / "README.md"
    begin, end = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
    if not readme.exists():
        return
    old = readme.read_text()
    if begin not in old or end not in old:
        return
    pattern = re.escape(begin) + ".*?" + re.escape(end)
    new = re.sub(pattern, lambda _: f"{begin}\n{text}\n{end}", old, flags=re.S)
    readme.write_text(new)


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    vers = versions()
    results: dict[str, dict] = {}
    # entries written by other scripts (make_untrained.py) stay; this script's own are rewritten
    old = json.loads((HERE / "PROVENANCE.json").read_text()) if (HERE / "PROVENANCE.json").exists() else {}
    provenance: dict[str, dict] = {k: v for k, v in old.items() if v.get("arch") not in ARCHS}
    for arch, (_, exporters, _, _) in ARCHS.items():
        model = build(arch)
        check_distinct(model)
        for exporter in exporters:
            name = file_name(arch, exporter)
            path = HERE / name
            export(model, exporter, path)
            r = verify(model, path)
            r["exporter"] = exporter
            results[name] = r
            provenance[name] = provenance_entry(arch, exporter, r, model)
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")

    print(f"\n{'file':<30} {'nodes':>5} {'size':>8} {'max diff':>9}  op types")
    for name, r in results.items():
        ops = " ".join(f"{op}:{n}" for op, n in r["ops"].items())
        print(f"{name:<30} {r['nodes']:>5} {r['size']:>8} {r['diff']:>9.1e}  {ops}")
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.is_file())
    print(f"\ntotal size of models/: {total} bytes; versions: {vers}")
    assert total < 5 * 1024 * 1024, "models/ must stay under 5 MB"
    update_readme(markdown(results, vers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
