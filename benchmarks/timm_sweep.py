"""Architectures the repository does not ship: timm models at their own initialisation, exported
with both PyTorch exporters, pruned with default options and validated.

What users prune first is often a model straight from its constructor, and what an unseen model
meets is an op pattern no reference model has. For each timm model: `timm.create_model(name,
pretrained=False, num_classes=10)` in eval mode (timm's initialisation, no download), a
1x3xHxW input (the model's default size) with a dynamic batch, exported with the
dynamo exporter (opset 18) and the TorchScript one (opset 17); then `onnxprune.prune(ratio=0.4)`
and `onnxprune.validate` (checker, ONNX Runtime, slices, mask-equivalence parity). A row gives
the groups found / pruned / pinned, the MACs ratio, the share of MACs in prunable layers and
whether the result validates; an export that fails is reported as such (the exporter's limit,
not onnxprune's).

    /tmp/venv-tv/bin/pip install timm==1.0.31
    /tmp/venv-tv/bin/python benchmarks/timm_sweep.py --out benchmarks/timm_sweep.md \\
        --cache /tmp/timm-sweep

Exports are cached in `--cache` (they are large); `--models` picks a subset.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import warnings
from pathlib import Path

import onnx
import onnxruntime
import timm
import torch
from machine import cpu_model
from sweep_rows import prune_row, table

import onnxprune

CONVNETS = [
    # splits, concats, shuffles, multi-branch blocks, attention gates
    "mixnet_s",
    "ghostnet_100",
    "ghostnetv2_100",
    "rexnet_100",
    "hrnet_w18_small",
    "cspresnet50",
    "cs3darknet_s",
    "dla34",
    "dpn68",
    "res2net50_26w_4s",
    "selecsls42b",
    "ese_vovnet19b_dw",
    "lcnet_050",
    "repvgg_a0",
    "mobileone_s0",
    "regnetz_b16",
    "nf_resnet26",
    "resnest14d",
    "skresnet18",
    "fbnetc_100",
    "hardcorenas_a",
    "tinynet_a",
    "gernet_s",
    "mobilenetv4_conv_small",
    "inception_next_tiny",
    "efficientnet_lite0",
    "mnasnet_small",
    "spnasnet_100",
    "semnasnet_075",
    "mobilenetv3_small_050",
    "eca_resnet33ts",
    "gcresnet33ts",
    "resnetv2_50",
    "bat_resnext26ts",
]
HYBRIDS = [
    # token reshapes, attention variants, normalization over channels
    "mobilevit_xxs",
    "levit_128s",
    "poolformer_s12",
    "efficientformer_l1",
    "xcit_nano_12_p16_224",
    "edgenext_xx_small",
    "fastvit_t8",
    "efficientvit_b0",
    "coat_lite_tiny",
    "pit_ti_224",
    "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "resmlp_12_224",
    "gmlp_ti16_224",
    "pvt_v2_b0",
    "maxvit_nano_rw_256",
    "botnet26t_256",
    "halonet26t",
    "lambda_resnet26t",
]
MODELS = CONVNETS + HYBRIDS
EXPORTERS = ("dynamo", "torchscript")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in torch.export's messages


def export(model: torch.nn.Module, example: torch.Tensor, exporter: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                opset_version=18,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=["x"],
                dynamic_axes={"x": {0: "batch"}},
            )


def study(name: str, cache: Path, ratio: float) -> list[dict]:
    torch.manual_seed(0)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
        channels, height, width = model.pretrained_cfg.get("input_size", (3, 224, 224))
        example = torch.randn(1, channels, height, width)
    except Exception as exc:  # a model this timm cannot build here
        return [{"model": name, "exporter": e, "error": f"build: {exc}"[:160]} for e in EXPORTERS]
    rows = []
    for exporter in EXPORTERS:
        row: dict = {"model": name, "exporter": exporter}
        path = cache / f"{name}_{exporter}.onnx"
        try:
            if not path.exists():
                export(model, example, exporter, path)
        except Exception as exc:
            row["error"] = "export: " + _ANSI.sub("", str(exc)).splitlines()[0][:150]
            path.unlink(missing_ok=True)
            rows.append(row)
            continue
        rows.append(prune_row(row, path, ratio))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/timm-sweep"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("timm_sweep.md"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        for row in study(name, args.cache, args.ratio):
            print(json.dumps(row), flush=True)
            rows.append(row)
    exported = [r for r in rows if "valid" in r]
    summary = (
        f"{len(exported)} of {len(rows)} exports pruned and validated: "
        f"{sum(r['valid'] for r in exported)} valid, {sum(not r['valid'] for r in exported)} failed; "
        f"{sum(r['groups'][1] > 0 for r in exported)} with at least one group pruned."
    )
    head = [
        "# timm architectures at their own initialisation, both exporters",
        "",
        f"Machine: {cpu_model()}, Python {platform.python_version()}, torch {torch.__version__}, timm "
        f"{timm.__version__}, onnx {onnx.__version__}, ONNX Runtime {onnxruntime.__version__}, onnxprune "
        f"{onnxprune.__version__}. Command: `python benchmarks/timm_sweep.py` (ratio {args.ratio}, "
        "default options). See the script's docstring for what each column is.",
        "",
        summary,
        "",
    ]
    args.out.write_text("\n".join([*head, *table(rows), ""]))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
