"""Export reduced-width torchvision models with both PyTorch ONNX exporters.

Each of the twelve architecture families below is built from torchvision's own classes
(``ResNet``/``Bottleneck``/``BasicBlock``, ``VGG``/``make_layers``, ``AlexNet``, ``SqueezeNet``/``Fire``,
``DenseNet``, ``MobileNetV2``, ``MobileNetV3``/``_mobilenet_v3_conf``, ``ShuffleNetV2``,
``ConvNeXt``/``CNBlockConfig``) with the family's real topology -- the same block types, the same number
of blocks per stage, grouped convolutions, squeeze-excitation, channel shuffle, dense concatenation, fire
modules, layer scale, LayerNorm -- but with narrow channel widths so the files stay small (see ``ARCHS``
and README.md for exactly how each one was narrowed).  All classifiers have 10 classes.

The model is initialised with a fixed seed and then perturbed like ``models/make_models.py`` does: every
parameter gets a small random offset and every BatchNorm/LayerNorm gets random affine parameters (and
BatchNorm random running statistics), so that no bias is zero and no two tensors are identical (the
exporters merge or drop those, and trained models have neither).

Every model is exported twice from the same weights:

* dynamo:      ``torch.onnx.export(..., dynamo=True, opset_version=18, external_data=False,
  dynamic_shapes={"x": {0: Dim("batch")}})`` -> ``<arch>_dynamo.onnx``.  If that fails, the export is
  retried with a batch-2 example (still a dynamic batch; this is what ConvNeXt needs), then with a static
  batch; PROVENANCE.json records the errors and the example batch that worked.
* TorchScript: ``torch.onnx.export(..., dynamo=False, opset_version=17, input_names=["input"],
  output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})``
  -> ``<arch>_torchscript.onnx``.

Files are stored as the exporters wrote them (re-saved through ``onnx.load``/``onnx.save_model`` without
external data; an IR version above 10 would be lowered to 10, but neither exporter writes one).  Each
file is checked with ``onnx.checker.check_model(full_check=True)``, run in ONNX Runtime
(CPUExecutionProvider) on a batch of 3 (batch 1 for a static-batch file) and compared with torch:
``max|ort - torch| / max(1, max|torch|) < 1e-4``.

Run from a venv with torch/torchvision (not a dependency of onnxprune)::

    python -m venv /tmp/venv-tv
    /tmp/venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 onnx onnxscript onnxruntime numpy
    /tmp/venv-tv/bin/python models/torchvision/make_torchvision.py            # all architectures
    /tmp/venv-tv/bin/python models/torchvision/make_torchvision.py resnet18   # only some

It rewrites the files, ``PROVENANCE.json`` (entries of architectures not rebuilt are kept) and the
generated section of ``README.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import platform
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch
import torchvision
from torch import nn
from torchvision.models.alexnet import AlexNet
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.densenet import DenseNet
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.shufflenetv2 import ShuffleNetV2
from torchvision.models.squeezenet import Fire, SqueezeNet
from torchvision.models.vgg import VGG, cfgs, make_layers

HERE = Path(__file__).resolve().parent
SEED = 0
NUM_CLASSES = 10
MAX_IR_VERSION = 10
DYNAMO_OPSET = 18
TORCHSCRIPT_OPSET = 17
TOLERANCE = 1e-4  # relative: max abs diff / max(1, max |torch output|)
EXPORTERS = ("dynamo", "torchscript")
SIZE_LIMIT = 18 * 1024 * 1024  # asked for ~12 MB; see README.md "Size" for why it is ~17 MB


# --------------------------------------------------------------------------------------------
# Narrowed architectures
# --------------------------------------------------------------------------------------------


class NarrowResNet(ResNet):
    """torchvision ``ResNet`` with every hard-coded width divided by ``div``.

    ``ResNet.__init__`` fixes the stem at 64 channels and the stage ``planes`` at 64/128/256/512 (the
    constructor's ``width_per_group`` only scales the bottleneck's inner width).  This subclass changes
    nothing but the widths: ``_make_layer`` is called with ``planes // div`` (and sets ``inplanes`` to the
    narrowed stem width before the first stage), and the stem ``conv1``/``bn1`` and the ``fc`` head, which
    ``ResNet.__init__`` builds with the literal widths, are rebuilt with the narrowed ones.  Blocks,
    block counts, ``groups``, ``width_per_group``, downsample branches, module names and ``forward`` are
    torchvision's own.
    """

    def __init__(self, block: type[nn.Module], layers: list[int], div: int, **kwargs) -> None:
        object.__setattr__(self, "_div", div)  # read by _make_layer while ResNet.__init__ runs
        super().__init__(block, layers, **kwargs)
        stem = 64 // div
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(stem)
        self.fc = nn.Linear(512 * block.expansion // div, self.fc.out_features)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # first stage: its input is the (narrowed) stem
            self.inplanes = 64 // self._div
        return super()._make_layer(block, planes // self._div, blocks, stride, dilate)


class NarrowAlexNet(AlexNet):
    """torchvision ``AlexNet``'s exact layer sequence with narrowed widths (AlexNet has no width option).

    Features: conv widths 64/192/384/256/256 divided by 8 (8/24/48/32/32), kernels, strides, paddings
    and pools unchanged; ``AdaptiveAvgPool2d((6, 6))``; classifier Dropout-Linear-ReLU-Dropout-Linear-ReLU-
    Linear with the hidden width 4096 divided by 128 (32).  ``forward`` is AlexNet's.
    """

    def __init__(
        self, num_classes: int = NUM_CLASSES, dropout: float = 0.5, conv_div: int = 8, fc_div: int = 128
    ):
        nn.Module.__init__(self)
        c1, c2, c3, c4, c5 = (w // conv_div for w in (64, 192, 384, 256, 256))
        hidden = 4096 // fc_div
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


class NarrowSqueezeNet(SqueezeNet):
    """torchvision ``SqueezeNet`` version 1_1 with every width divided by ``div`` (the class has no width
    option: its ``__init__`` spells the Fire widths out).  Same sequence: conv 3x3 s2, ReLU, MaxPool(ceil),
    Fire x2, MaxPool, Fire x2, MaxPool, Fire x4, then Dropout, final conv 1x1 to the classes, ReLU,
    AdaptiveAvgPool(1); torchvision's ``Fire`` modules and ``forward``."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.5, div: int = 4) -> None:
        nn.Module.__init__(self)
        self.num_classes = num_classes

        def w(c: int) -> int:
            return c // div

        self.features = nn.Sequential(
            nn.Conv2d(3, w(64), kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(w(64), w(16), w(64), w(64)),
            Fire(w(128), w(16), w(64), w(64)),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(w(128), w(32), w(128), w(128)),
            Fire(w(256), w(32), w(128), w(128)),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(w(256), w(48), w(192), w(192)),
            Fire(w(384), w(48), w(192), w(192)),
            Fire(w(384), w(64), w(256), w(256)),
            Fire(w(512), w(64), w(256), w(256)),
        )
        final_conv = nn.Conv2d(w(512), num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)


def narrow_vgg16_bn(div: int = 16, fc_div: int = 128) -> nn.Module:
    """``VGG(make_layers(cfgs["D"] with widths // div, batch_norm=True))``; VGG's classifier is hard-coded
    (Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, classes)), so it
    is replaced by the same sequence with in-features (512 // div)*7*7 and hidden width 4096 // fc_div."""
    cfg = [v if v == "M" else v // div for v in cfgs["D"]]
    model = VGG(make_layers(cfg, batch_norm=True), num_classes=NUM_CLASSES)
    last, hidden = 512 // div, 4096 // fc_div
    model.classifier = nn.Sequential(
        nn.Linear(last * 7 * 7, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, NUM_CLASSES),
    )
    for m in model.classifier:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
    return model


def narrow_mobilenet_v3_large(width_mult: float = 0.25) -> nn.Module:
    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=width_mult)
    return MobileNetV3(setting, last_channel, num_classes=NUM_CLASSES)


def narrow_convnext_tiny(div: int = 16) -> nn.Module:
    c = [w // div for w in (96, 192, 384, 768)]
    setting = [
        CNBlockConfig(c[0], c[1], 3),
        CNBlockConfig(c[1], c[2], 3),
        CNBlockConfig(c[2], c[3], 9),
        CNBlockConfig(c[3], None, 3),
    ]
    return ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=NUM_CLASSES)


@dataclasses.dataclass(frozen=True)
class Spec:
    build: Callable[[], nn.Module]
    input_hw: int
    built_as: str  # the exact construction, as code
    reduction: str  # how it differs from the torchvision model of that name
    patterns: str  # what a pruner meets in it


RESNET_NOTE = (
    "NarrowResNet = torchvision ResNet subclass that divides the hard-coded stem width (64) and stage planes "
    "(64/128/256/512) by div: _make_layer gets planes//div, conv1/bn1/fc are rebuilt narrow; blocks, forward "
    "and module names are torchvision's."
)

ARCHS: dict[str, Spec] = {
    "resnet18": Spec(
        lambda: NarrowResNet(BasicBlock, [2, 2, 2, 2], div=16, num_classes=NUM_CLASSES),
        64,
        "NarrowResNet(BasicBlock, [2, 2, 2, 2], div=16, num_classes=10)",
        "Stem 4 and stage widths 4/8/16/32 instead of 64 and 64/128/256/512 (/16); BasicBlock, [2,2,2,2], "
        "stride-2 conv1x1+BN downsamples as in resnet18. " + RESNET_NOTE,
        "BasicBlock residual Adds, identity and conv1x1+BN downsample shortcuts, 7x7 s2 stem + MaxPool, "
        "global average pool, flatten, Linear.",
    ),
    "resnet50": Spec(
        lambda: NarrowResNet(Bottleneck, [3, 4, 6, 3], div=16, num_classes=NUM_CLASSES),
        64,
        "NarrowResNet(Bottleneck, [3, 4, 6, 3], div=16, num_classes=10)",
        "Stem 4, stage planes 4/8/16/32 (bottleneck width = planes, outputs 16/32/64/128) instead of 64, "
        "64/128/256/512 (outputs 256..2048) (/16); Bottleneck x [3,4,6,3] as in resnet50. " + RESNET_NOTE,
        "Bottleneck 1x1-3x3-1x1 with expansion 4, residual Adds chained over 16 blocks, stride on the 3x3.",
    ),
    "resnext50_32x4d": Spec(
        lambda: NarrowResNet(
            Bottleneck, [3, 4, 6, 3], div=16, groups=8, width_per_group=16, num_classes=NUM_CLASSES
        ),
        64,
        "NarrowResNet(Bottleneck, [3, 4, 6, 3], div=16, groups=8, width_per_group=16, num_classes=10)",
        "Widths as narrow resnet50 (/16) but grouped: the 3x3 convs have groups=8 and inner widths "
        "8/16/32/64 = outputs/2 (as in resnext50_32x4d, whose inner widths 128..1024 are outputs/2). "
        "Cardinality is 8 instead of 32 because 32 groups need an inner width >= 32 in stage 1 "
        "(>= 4x the narrow file); channels per group are 1/2/4/8 (4/8/16/32 in the original). "
        "width_per_group=16 gives int(planes*16/64)*8 = 2*planes. " + RESNET_NOTE,
        "grouped 3x3 convs (groups=8; stage 1 has one channel per group), Bottleneck residuals.",
    ),
    "wide_resnet50_2": Spec(
        lambda: NarrowResNet(Bottleneck, [3, 4, 6, 3], div=16, width_per_group=128, num_classes=NUM_CLASSES),
        64,
        "NarrowResNet(Bottleneck, [3, 4, 6, 3], div=16, width_per_group=128, num_classes=10)",
        "Widths /16 as narrow resnet50 with torchvision's own width_per_group=128, so the bottleneck inner "
        "width is 2x resnet50's (8/16/32/64 vs outputs 16/32/64/128) exactly as in wide_resnet50_2. "
        + RESNET_NOTE,
        "wide Bottlenecks (inner width = outputs/2), residual Adds.",
    ),
    "vgg16_bn": Spec(
        lambda: narrow_vgg16_bn(div=16, fc_div=128),
        224,
        "VGG(make_layers([c // 16 for c in cfgs['D']], batch_norm=True), num_classes=10); classifier replaced "
        "by Linear(32*7*7, 32), ReLU, Dropout, Linear(32, 32), ReLU, Dropout, Linear(32, 10)",
        "Conv widths 4/4, 8/8, 16x3, 32x3, 32x3 instead of 64..512 (/16), BN after each conv, 5 MaxPools, "
        "AdaptiveAvgPool2d((7,7)); VGG's hard-coded classifier (25088->4096->4096) replaced by the same "
        "Linear/ReLU/Dropout sequence 1568->32->32->10 (hidden 4096/128). Input 224 so the map entering AdaptiveAvgPool is 7x7.",
        "13 conv+BN+ReLU with no shortcut, MaxPool, flatten of a 32x7x7 map into a Gemm (each conv channel owns "
        "49 Gemm input columns), Gemm-ReLU-Gemm-ReLU-Gemm.",
    ),
    "alexnet": Spec(
        lambda: NarrowAlexNet(num_classes=NUM_CLASSES, conv_div=8, fc_div=128),
        224,
        "NarrowAlexNet(num_classes=10, conv_div=8, fc_div=128)",
        "AlexNet has no width option: NarrowAlexNet (AlexNet subclass, torchvision forward) rebuilds its exact "
        "layer sequence with conv widths 8/24/48/32/32 (/8 of 64/192/384/256/256) and classifier hidden "
        "width 32 (4096/128): Linear(32*6*6, 32), Linear(32, 32), Linear(32, 10). Input 224 so the map "
        "entering AdaptiveAvgPool2d((6,6)) is 6x6.",
        "11x11 s4 and 5x5 convs with bias, no BN, MaxPools, flatten of a 32x6x6 map into a Gemm (36 columns "
        "per channel), Dropout.",
    ),
    "squeezenet1_1": Spec(
        lambda: NarrowSqueezeNet(num_classes=NUM_CLASSES, div=4),
        96,
        "NarrowSqueezeNet(num_classes=10, div=4)",
        "SqueezeNet 1_1 layer sequence with all widths /4 (stem 16, Fire squeeze 4/4/8/8/12/12/16/16, "
        "expand 16/16/32/32/48/48/64/64 per branch); the class spells its widths out, so NarrowSqueezeNet "
        "(SqueezeNet subclass, torchvision Fire modules and forward) rebuilds the sequence.",
        "Fire modules: squeeze 1x1 feeding two expand convs (1x1 and 3x3) concatenated on channels and fed "
        "to the next squeeze; MaxPool with ceil_mode; classifier conv 1x1 -> ReLU -> global pool (a 4-D conv "
        "head, no Gemm).",
    ),
    "densenet121": Spec(
        lambda: DenseNet(
            growth_rate=4, block_config=(6, 12, 24, 16), num_init_features=8, num_classes=NUM_CLASSES
        ),
        64,
        "DenseNet(growth_rate=4, block_config=(6, 12, 24, 16), num_init_features=8, num_classes=10)",
        "torchvision's own constructor: growth rate 4 and 8 initial features instead of 32 and 64 (/8; growth "
        "8 / 16 features made 2.0 + 2.8 MB files); the densenet121 block config (6,12,24,16), bn_size 4 "
        "(bottleneck 1x1 convs emit 16 channels) and transitions with compression 0.5 unchanged.",
        "58 dense layers (BN-ReLU-conv1x1-BN-ReLU-conv3x3) whose outputs are concatenated with all earlier "
        "features; pre-activation BatchNorms after Concat that no exporter folds; transitions "
        "(BN-ReLU-conv1x1-AvgPool); F.relu + adaptive_avg_pool2d + flatten head.",
    ),
    "mobilenet_v2": Spec(
        lambda: MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25),
        64,
        "MobileNetV2(num_classes=10, width_mult=0.25)",
        "torchvision's own width_mult=0.25 (channels 8..80, rounded to multiples of 8); last_channel stays "
        "1280 because torchvision uses max(1.0, width_mult) for it.",
        "inverted residuals: expand 1x1 -> depthwise 3x3 -> project 1x1 (no activation), residual Adds where "
        "stride 1 and equal widths, ReLU6 as Clip, Dropout + Linear head.",
    ),
    "mobilenet_v3_large": Spec(
        narrow_mobilenet_v3_large,
        64,
        "MobileNetV3(*_mobilenet_v3_conf('mobilenet_v3_large', width_mult=0.25), num_classes=10)",
        "torchvision's own width_mult=0.25 through _mobilenet_v3_conf (all channels, SE squeeze widths and "
        "last_channel 320 scaled and rounded to multiples of 8).",
        "SE blocks (AdaptiveAvgPool -> conv1x1 -> ReLU -> conv1x1 -> Hardsigmoid -> Mul), Hardswish, 5x5 "
        "depthwise convs, residual Adds, Linear-Hardswish-Dropout-Linear head.",
    ),
    "shufflenet_v2_x1_0": Spec(
        lambda: ShuffleNetV2([4, 8, 4], [24, 30, 58, 116, 256], num_classes=NUM_CLASSES),
        64,
        "ShuffleNetV2([4, 8, 4], [24, 30, 58, 116, 256], num_classes=10)",
        "torchvision's own constructor with the x1_0 repeats [4, 8, 4]; stem 24 as in every variant, stage "
        "widths 30/58/116 and conv5 256 = x1_0's 116/232/464/1024 divided by 4 (rounded to even, as the "
        "channel split needs); the branches are 15/29/58 channels wide.",
        "channel split (chunk -> Split / Slices) and channel shuffle (Reshape -> Transpose -> Reshape) after "
        "Concat of two branches; depthwise convs without activation; x.mean([2, 3]) head.",
    ),
    "convnext_tiny": Spec(
        lambda: narrow_convnext_tiny(div=16),
        64,
        "ConvNeXt([CNBlockConfig(6, 12, 3), CNBlockConfig(12, 24, 3), CNBlockConfig(24, 48, 9), "
        "CNBlockConfig(48, None, 3)], stochastic_depth_prob=0.1, num_classes=10)",
        "torchvision's own constructor with convnext_tiny's depths [3, 3, 9, 3] and stochastic_depth_prob "
        "0.1 (identity in eval), widths 6/12/24/48 instead of 96/192/384/768 (/16); layer_scale starts at "
        "the default 1e-6 and is perturbed like every parameter.",
        "4x4 s4 patchify stem + LayerNorm2d, CNBlocks: depthwise 7x7 -> permute -> LayerNorm -> Linear 4x -> "
        "GELU -> Linear -> permute -> Mul(layer_scale [C,1,1]) -> residual Add; LayerNorm2d + 2x2 s2 "
        "downsample convs; Flatten + LayerNorm + Linear head.",
    ),
}


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def build(arch: str) -> nn.Module:
    """Construct ``arch`` deterministically, perturb every tensor and return it in eval mode."""
    torch.manual_seed(SEED)
    model = ARCHS[arch].build()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                shape = module.weight.shape
                module.weight.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(shape, generator=gen))
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
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
# Export and verification
# --------------------------------------------------------------------------------------------


def input_shape(arch: str) -> tuple[int, int, int, int]:
    hw = ARCHS[arch].input_hw
    return (1, 3, hw, hw)


def first_error_lines(exc: BaseException) -> str:
    """First line of the exception and of its root cause, without ANSI colour codes (for PROVENANCE.json)."""

    def lines(e: BaseException) -> list[str]:
        text = "".join(traceback.format_exception_only(type(e), e))
        return [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines() if line.strip()]

    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__
    parts = lines(exc)[:1]
    if root is not exc:
        parts += ["caused by: " + " ".join(lines(root)[:3])]
    return " | ".join(parts)[:1000]


def export(model: nn.Module, arch: str, exporter: str, path: Path) -> dict:
    """Export ``model`` to ``path``; return notes for PROVENANCE.json (how the batch axis was handled)."""
    x = torch.randn(input_shape(arch), generator=torch.Generator().manual_seed(SEED + 2))
    notes: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        if exporter == "dynamo":
            # 1) the batch-1 example with a dynamic batch; 2) if torch.export specialises the batch to 1
            # (ConvNeXt's LayerNorm2d does), a batch-2 example, still dynamic; 3) a static batch of 1.
            x2 = torch.randn((2, *x.shape[1:]), generator=torch.Generator().manual_seed(SEED + 2))
            attempts = [(x, True), (x2, True), (x, False)]
            errors: list[str] = []
            for example, dynamic in attempts:
                try:
                    torch.onnx.export(
                        model,
                        (example,),
                        str(raw),
                        dynamo=True,
                        opset_version=DYNAMO_OPSET,
                        external_data=False,
                        verbose=False,
                        **({"dynamic_shapes": {"x": {0: torch.export.Dim("batch")}}} if dynamic else {}),
                    )
                except Exception as exc:
                    errors.append(first_error_lines(exc))
                    what = f"example batch {example.shape[0]}, {'dynamic' if dynamic else 'static'} batch"
                    print(f"  {path.name}: dynamo export with {what} failed: {errors[-1][:300]}")
                    continue
                notes["dynamic_axes"] = {"0": "batch"} if dynamic else {}
                notes["example_batch"] = int(example.shape[0])
                if errors:
                    notes["export_retries"] = errors
                break
            else:
                raise RuntimeError(f"{path.name}: every dynamo export attempt failed: {errors}")
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
            notes["dynamic_axes"] = {"0": "batch"}
            notes["example_batch"] = int(x.shape[0])
        # onnx.load pulls in any external data, so the file saved below is self-contained
        proto = onnx.load(str(raw))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return notes


def verify(model: nn.Module, arch: str, path: Path, dynamic: bool) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert proto.ir_version <= MAX_IR_VERSION, proto.ir_version
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer), (
        f"{path.name} has external data"
    )
    assert not list(path.parent.glob(path.name + ".data")), f"{path.name} left a .data file"
    assert not proto.functions, f"{path.name} has local functions"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = 3 if dynamic else 1  # 3: neither export example (1, or 2 for a retry)
    x = torch.randn((batch, *input_shape(arch)[1:]), generator=torch.Generator().manual_seed(SEED + 3))
    with torch.no_grad():
        expected = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape, (got.shape, expected.shape)
    diff = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    assert diff / scale < TOLERANCE, f"{path.name}: max abs diff {diff} (output scale {scale})"
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "nodes": len(proto.graph.node),
        "ops": dict(sorted(counts.items())),
        "size": path.stat().st_size,
        "diff": diff,
        "scale": scale,
        "out_max": float(np.abs(expected).max()),
        "ir": proto.ir_version,
        "opset": opset,
        "initializers": len(proto.graph.initializer),
        "input": sess.get_inputs()[0].name,
        "input_shape_onnx": [d if isinstance(d, int) else str(d) for d in sess.get_inputs()[0].shape],
        "output": sess.get_outputs()[0].name,
        "output_shape": [d if isinstance(d, int) else str(d) for d in sess.get_outputs()[0].shape],
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def markdown(provenance: dict[str, dict]) -> str:
    lines = [
        "### Architectures",
        "",
        "| arch | input | parameters | built as | how it was reduced | patterns it exercises |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arch, spec in ARCHS.items():
        entry = next((p for p in provenance.values() if p["arch"] == arch), None)
        params = entry["parameters"] if entry else "?"
        hw = spec.input_hw
        lines.append(
            f"| `{arch}` | 1x3x{hw}x{hw} | {params} | `{spec.built_as}` | {spec.reduction} | {spec.patterns} |"
        )
    vers = sorted({json.dumps(p["versions"], sort_keys=True) for p in provenance.values()})
    lines += ["", "### Files", ""]
    for v in vers:
        lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in json.loads(v).items()) + ".")
    lines += [
        "",
        "| file | exporter | opset | IR | batch | nodes | initializers | size (bytes) | max diff | op types (count) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in provenance.items():
        ops = ", ".join(f"{op} {n}" for op, n in p["op_types"].items())
        batch = "dynamic" if p["dynamic_axes"] else "**static**"
        lines.append(
            f"| `{name}` | {p['exporter']} | {p['opset']} | {p['ir_version']} | {batch} | {p['nodes']} "
            f"| {p['initializers']} | {p['size_bytes']} | {p['max_abs_diff']:.1e} | {ops} |"
        )
    lines.append("")
    lines.append(f"Total size of the .onnx files: {sum(p['size_bytes'] for p in provenance.values())} bytes.")
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
    readme.write_text(re.sub(pattern, lambda _: f"{begin}\n{text}\n{end}", old, flags=re.S))


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    archs = argv or list(ARCHS)
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        print(f"unknown architectures: {unknown}; known: {list(ARCHS)}")
        return 2
    vers = versions()
    prov_path = HERE / "PROVENANCE.json"
    old = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    fresh: dict[str, dict] = {}
    for arch in archs:
        print(f"{arch} ...", flush=True)
        model = build(arch)
        check_distinct(model)
        spec = ARCHS[arch]
        for exporter in EXPORTERS:
            name = f"{arch}_{exporter}.onnx"
            path = HERE / name
            notes = export(model, arch, exporter, path)
            r = verify(model, arch, path, dynamic=bool(notes["dynamic_axes"]))
            fresh[name] = {
                "arch": arch,
                "torchvision_name": arch,
                "built_as": spec.built_as,
                "reduction": spec.reduction,
                "exporter": exporter,
                "export_call": (
                    f"torch.onnx.export(model, (x,), path, dynamo=True, opset_version={DYNAMO_OPSET}, "
                    "external_data=False"
                    + (', dynamic_shapes={"x": {0: Dim("batch")}})' if notes["dynamic_axes"] else ")")
                    if exporter == "dynamo"
                    else f"torch.onnx.export(model, (x,), path, dynamo=False, opset_version={TORCHSCRIPT_OPSET}, "
                    'input_names=["input"], output_names=["output"], '
                    'dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})'
                ),
                "opset": r["opset"],
                "ir_version": r["ir"],
                "input_shape": list(input_shape(arch)),
                "dynamic_axes": notes["dynamic_axes"],
                "export_example_batch": notes["example_batch"],
                **({"export_retries": notes["export_retries"]} if "export_retries" in notes else {}),
                "input_name": r["input"],
                "onnx_input_shape": r["input_shape_onnx"],
                "output_name": r["output"],
                "output_shape": r["output_shape"],
                "parameters": sum(p.numel() for p in model.parameters()),
                "nodes": r["nodes"],
                "initializers": r["initializers"],
                "op_types": r["ops"],
                "size_bytes": r["size"],
                "max_abs_diff": r["diff"],
                "max_abs_output": r["out_max"],  # the diff is checked against max(1, this)
                "seed": SEED,
                "versions": vers,
            }
            print(
                f"  {name:<36} nodes {r['nodes']:>5}  size {r['size']:>8}  diff {r['diff']:.1e} "
                f"(scale {r['scale']:.1e})  {'dynamic' if notes['dynamic_axes'] else 'STATIC'} batch",
                flush=True,
            )
    merged = {k: v for k, v in old.items() if v.get("arch") not in archs}
    merged.update(fresh)
    order = {f"{a}_{e}.onnx": i for i, (a, e) in enumerate((a, e) for a in ARCHS for e in EXPORTERS)}
    provenance = dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order))))
    prov_path.write_text(json.dumps(provenance, indent=2) + "\n")

    total = sum(p.stat().st_size for p in HERE.iterdir() if p.is_file())
    print(f"\ntotal size of models/torchvision/: {total} bytes; versions: {vers}")
    update_readme(markdown(provenance))
    assert total < SIZE_LIMIT, f"models/torchvision/ is {total} bytes, limit {SIZE_LIMIT}"
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
