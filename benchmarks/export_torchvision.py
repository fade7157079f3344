"""Export full-width torchvision models to ONNX for the speed study (benchmarks/speed.py).

resnet50, mobilenet_v2 and densenet121 are built from torchvision with random weights (no
download), perturbed the way shared/EXPORTERS.md asks (random BatchNorm statistics and affine
parameters, a small random offset on every parameter) so the exporter sees what a trained model
looks like, and exported with the dynamo exporter at opset 18: a 1x3x224x224 float32 example
input whose batch dim is dynamic. Files are self-contained, IR version at most 10 (what older
ONNX Runtime releases load), and each is checked against torch on a batch of 2.

The files go to a cache folder outside the repository (they are 14-100 MB each):

    python -m venv /tmp/venv-tv
    /tmp/venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 onnx onnxscript onnxruntime \\
        numpy networkx rich
    /tmp/venv-tv/bin/pip install -e .
    /tmp/venv-tv/bin/python benchmarks/export_torchvision.py --out /tmp/onnxprune-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from torch import nn

MODELS = ("resnet50", "mobilenet_v2", "densenet121")
EXTRA_MODELS = ("efficientnet_b0", "mnasnet1_0", "googlenet")  # the rest of the peer table
# constructor arguments beyond weights=None: GoogLeNet's auxiliary heads only exist in training
BUILD_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True}}
DEFAULT_OUT = Path("/tmp/onnxprune-bench")
IMAGE = (3, 224, 224)
OPSET = 18
MAX_IR_VERSION = 10
SEED = 0
TOLERANCE = 1e-4  # relative to the largest logit (random weights give logits in the thousands)


def build(name: str) -> nn.Module:
    """torchvision `name` with seeded random weights, BatchNorm statistics perturbed, in eval mode."""
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, name)(weights=None, **BUILD_KWARGS.get(name, {}))
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                module.bias.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=gen))
    return model.eval()


def export(model: nn.Module, path: Path) -> None:
    x = torch.randn((1, *IMAGE), generator=torch.Generator().manual_seed(SEED + 2))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(raw),
                dynamo=True,
                opset_version=OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
            )
        proto = onnx.load(str(raw))
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def verify(model: nn.Module, path: Path) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn((2, *IMAGE), generator=torch.Generator().manual_seed(SEED + 3))
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    rel = diff / max(float(np.abs(expected).max()), 1e-30)
    if got.shape != expected.shape or rel > TOLERANCE:
        raise SystemExit(f"{path.name}: ONNX Runtime differs from torch (max abs diff {diff}, rel {rel})")
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "file": path.name,
        "nodes": len(proto.graph.node),
        "ops": dict(sorted(ops.items())),
        "bytes": path.stat().st_size,
        "max_abs_diff_vs_torch": diff,
        "max_rel_diff_vs_torch": rel,
        "ir_version": proto.ir_version,
        "opset": OPSET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"cache folder (default {DEFAULT_OUT})")
    parser.add_argument("--models", nargs="+", choices=MODELS + EXTRA_MODELS, default=list(MODELS))
    parser.add_argument("--force", action="store_true", help="re-export files that exist")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    provenance = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "python": sys.version.split()[0],
        "exporter": f"torch.onnx.export(dynamo=True, opset_version={OPSET}), batch dynamic",
        "input": [1, *IMAGE],
        "models": {},
    }
    old = args.out / "PROVENANCE.json"
    if old.exists():  # keep the entries of models not exported this time
        provenance["models"] = json.loads(old.read_text()).get("models", {})
    for name in args.models:
        path = args.out / f"{name}.onnx"
        model = build(name)
        if args.force or not path.exists():
            print(f"exporting {name} -> {path}", flush=True)
            export(model, path)
        provenance["models"][name] = verify(model, path)
        info = provenance["models"][name]
        size_mb, rel = info["bytes"] / 1e6, info["max_rel_diff_vs_torch"]
        print(f"{name}: {info['nodes']} nodes, {size_mb:.1f} MB, relative diff vs torch {rel:.1e}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
