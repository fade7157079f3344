"""Round trip: export -> prune -> apply_plan -> the module computes the pruned ONNX model.

For every torchvision family in models/torchvision, the reference models in models/ and the
Hugging Face models in models/transformers, under both exporters: the module is rebuilt by its
make script (and checked against the checked-in file), the file is pruned, the plan is applied to
the module, and then the module's outputs must equal the pruned ONNX model's (relative 1e-5), and
exporting the module again must give a model with the same outputs and output shapes.

torch is imported at the top: without it this file errors, it never skips (CI installs torch).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import onnxprune
from onnxprune.torch import apply_plan
from tests.torch_cases import Case, reference_case, rel_err, torch_state, torchvision_case, transformers_case

PARITY = 1e-5
EXPORTERS = ("torchscript", "dynamo")
TORCHVISION = [
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "squeezenet1_1",
    "vgg16_bn",
    "wide_resnet50_2",
]
REFERENCE = [
    "resnet",
    "mobilenetv2",
    "densenet",
    "se",
    "flatten_gemm",
    "convtranspose",
    "inception_fresh",
    "resnet_zero_init",
]
TRANSFORMERS = ["bert", "bert_eager", "gpt2", "llama_gqa", "vit"]


def reexport(case: Case, exporter: str, path: Path) -> onnx.ModelProto:
    """Export the (pruned) module again with `exporter`, at the test inputs' shapes."""
    kwargs = case.inputs if isinstance(case.inputs, dict) else None
    args = () if kwargs is not None else case.inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(case.module, args, str(path), kwargs=kwargs, dynamo=True, external_data=False)
        else:
            names = list(kwargs) if kwargs is not None else ["input"]
            torch.onnx.export(
                case.module, args, str(path), kwargs=kwargs, dynamo=False, opset_version=17, input_names=names
            )
    return onnx.load(str(path))


def roundtrip(case: Case, exporter: str, **prune_kwargs) -> onnxprune.PruneResult:
    case.check_source()
    result = onnxprune.prune(case.path, **prune_kwargs)
    assert result.plan.removes_anything
    applied = apply_plan(case.module, result.plan, case.path, pruned=result.model)
    assert applied.shapes, "nothing was sliced"
    want = case.onnx_out(result.model)
    assert rel_err(case.torch_out(), want) < PARITY
    with tempfile.TemporaryDirectory() as tmp:
        again = reexport(case, exporter, Path(tmp) / "again.onnx")
        got = case.onnx_out(again)
    assert got.shape == want.shape
    assert rel_err(got, want) < PARITY
    return result


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("arch", TORCHVISION)
def test_torchvision_roundtrip(arch, exporter):
    roundtrip(torchvision_case(arch, exporter), exporter, ratio=0.4)


# TorchScript merged resnet_zero_init's all-zero folded weights into one tensor: test below
MERGED = ("resnet_zero_init", "torchscript")


REFERENCE_CASES = [(a, e) for a in REFERENCE for e in EXPORTERS if (a, e) != MERGED]


@pytest.mark.parametrize(("arch", "exporter"), REFERENCE_CASES)
def test_reference_roundtrip(arch, exporter):
    roundtrip(reference_case(arch, exporter), exporter, ratio=0.4)


def test_merged_zero_weights_are_refused_by_name():
    """Zero-init residual BatchNorms fold to all-zero conv weights, which TorchScript merges into
    one tensor read by several convs: any conv of that shape times zero matches it, so which
    modules read it cannot be told from values. Refused, naming the candidates."""
    case = reference_case(*MERGED)
    case.check_source()
    result = onnxprune.prune(case.path, ratio=0.4)
    before = torch_state(case.module)
    with pytest.raises(onnxprune.PlanError, match=r"ambiguous: its values match \['blocks\."):
        apply_plan(case.module, result.plan, case.path, pruned=result.model)
    assert all(torch.equal(before[k], v) for k, v in torch_state(case.module).items())


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformers_roundtrip(name, exporter):
    roundtrip(transformers_case(name, exporter), exporter, ratio=0.4)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_llama_gqa_kv_heads_roundtrip(exporter):
    """Pruning whole key/value heads of a GQA model: the query heads that share them go too."""
    case = transformers_case("llama_gqa", exporter)
    roundtrip(case, exporter, head_ratio=0.5, ffn_ratio=0.0)
    attn = case.module.model.layers[0].self_attn
    assert attn.k_proj.out_features == attn.head_dim  # one key/value head left of two
    assert attn.q_proj.out_features == attn.head_dim * attn.num_key_value_groups
    config = case.module.model.config
    assert config.num_key_value_heads == 1
    assert config.num_attention_heads * config.head_dim == attn.q_proj.out_features


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("arch", ["shufflenet_v2_x1_0", "c2f"])
def test_even_split_architectures(arch, exporter):
    """ShuffleNet's channel split and shuffle and C2f's chunk(2) split evenly in torch: a plan
    that prunes across the split is refused and leaves the module as it was; pruning only the
    channels inside the branches (the split, shuffle and concatenation nodes excluded, both
    exporters name nodes after their op) round-trips."""
    case = torchvision_case(arch, exporter) if arch.startswith("shuffle") else reference_case(arch, exporter)
    before = torch_state(case.module)
    result = onnxprune.prune(case.path, ratio=0.4)
    with pytest.raises(onnxprune.ModelError, match="nothing was changed"):
        apply_plan(case.module, result.plan, case.path, pruned=result.model)
    after = torch_state(case.module)
    assert all(torch.equal(before[k], after[k]) for k in before) and before.keys() == after.keys()
    roundtrip(case, exporter, ratio=0.4, exclude="Split|Slice|Concat|Reshape|Transpose")


COMPENSATED = [(c, "resnet18", e) for c in ("bias", "lsq") for e in EXPORTERS]
COMPENSATED.append(("lsq", "mobilenet_v2", "dynamo"))


@pytest.mark.parametrize(("compensate", "arch", "exporter"), COMPENSATED)
def test_compensated_updates_are_copied(arch, exporter, compensate):
    """With compensation the module takes the refitted values: it matches the compensated model,
    which differs from the structural one."""
    case = torchvision_case(arch, exporter)
    name = onnx.load(str(case.path), load_external_data=False).graph.input[0].name
    shape = case.inputs[0].shape[1:]
    calib = {name: np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)}
    result = roundtrip(case, exporter, ratio=0.4, calibration=calib, compensate=compensate)
    assert result.plan.updates
    assert rel_err(case.onnx_out(result.structural), case.onnx_out(result.model)) > 10 * PARITY
