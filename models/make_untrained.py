"""Export the reference model that keeps PyTorch's fresh initialisation: merged constants.

models/make_models.py perturbs every tensor so that exporters see what trained weights look like.
Users also prune models straight from their constructors (random weights, BatchNorm at its
defaults), and there the TorchScript exporter merges tensors of equal value: once BatchNorm is
folded, every conv of one width has the same all-zero bias, exported as one initializer that
Identity nodes hand to each conv. A pruner that treats that initializer as a tied weight couples
every conv of that width (shared/EXPORTERS.md); onnxprune gives each reader its own copy.

The same exporter merges whole weights too. With the residual branches' last BatchNorm scale at
zero (torchvision's ``zero_init_residual=True``, timm's default ``zero_init_last``), the folded
weight of every such conv is all zeros, and every later conv of the same shape reads the first
one's weight through an Identity. onnxprune reads the weight directly and treats it as tied.

- ``inception_fresh`` is a small GoogLeNet-style network (stem, two four-branch inception blocks
  joined by Concat, a strided conv, pooling, Linear).
- ``resnet_zero_init`` is a small ResNet (two stages of two BasicBlocks, 16 and 32 channels) whose
  blocks' last BatchNorm scale starts at zero.

Both are exported with both exporters exactly like the other reference models
(make_models.export and make_models.verify), without perturbation. The script checks that each
TorchScript export does share a tensor among several nodes (a bias for ``inception_fresh``, a conv
weight for ``resnet_zero_init``), and adds the files to PROVENANCE.json (the other entries are
kept)::

    /tmp/venv-export/bin/python models/make_untrained.py

Versions used for the checked-in files: torch 2.14.1, onnx 1.23.2, onnxscript 0.7.2,
onnxruntime 1.32.0.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings

import onnx
import torch
from make_models import HERE, SEED, BasicBlock, conv_bn, export, provenance_entry, verify
from torch import nn


class Inception(nn.Module):
    """Four branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; maxpool -> 1x1) concatenated on channels."""

    def __init__(self, cin: int, b1: int, b2: tuple[int, int], b3: tuple[int, int], b4: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(*conv_bn(cin, b1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(*conv_bn(cin, b2[0], 1), nn.ReLU(), *conv_bn(b2[0], b2[1]), nn.ReLU())
        self.branch3 = nn.Sequential(*conv_bn(cin, b3[0], 1), nn.ReLU(), *conv_bn(b3[0], b3[1]), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_bn(cin, b4, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16), nn.ReLU())
        self.block1 = Inception(16, 16, (16, 24), (8, 16), 8)  # 64 channels out
        self.down = nn.Sequential(*conv_bn(64, 32, 3, 2), nn.ReLU())
        self.block2 = Inception(32, 16, (16, 32), (8, 16), 16)  # 80 channels out
        self.head = nn.Linear(80, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class ZeroInitResNet(nn.Module):
    """Stem, two stages of two BasicBlocks (16 then 32 channels), pooling, Linear; every block's
    last BatchNorm scale is zero, as ``zero_init_residual=True`` leaves it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16), nn.ReLU())
        blocks = [BasicBlock(16, 16), BasicBlock(16, 16), BasicBlock(16, 32, 2), BasicBlock(32, 32)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(32, 10)
        for block in blocks:
            nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


MODELS = {"inception_fresh": InceptionNet, "resnet_zero_init": ZeroInitResNet}
"""Architecture name -> the module, built at PyTorch's initialisation."""


def shared_tensors(path) -> dict[str, int]:
    """Initializers that more than one node reads (Identity nodes included): name -> readers."""
    graph = onnx.load(str(path)).graph
    names = {t.name for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            if name in names:
                readers[name] = readers.get(name, 0) + 1
    return {name: n for name, n in readers.items() if n > 1}


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    provenance = json.loads((HERE / "PROVENANCE.json").read_text())
    for arch, build in MODELS.items():
        torch.manual_seed(SEED)
        model = build().eval()  # PyTorch's own initialisation: no perturbation
        for exporter in ("dynamo", "torchscript"):
            path = HERE / f"{arch}_{exporter}.onnx"
            export(model, exporter, path)
            r = verify(model, path)
            shared = shared_tensors(path)
            print(
                f"{path.name}: {r['nodes']} nodes, {r['size']} bytes, max diff {r['diff']:.1e}, "
                f"shared {shared}"
            )
            if exporter == "torchscript" and not shared:
                raise SystemExit(f"{path.name}: no merged constant; this model exists to have some")
            provenance[path.name] = provenance_entry(arch, exporter, r, model) | {
                "initialisation": "PyTorch defaults, not perturbed (models/make_untrained.py)",
            }
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
