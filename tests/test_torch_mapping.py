"""onnxprune.torch: placing plan tensors under both exporters' naming, refusals, updates.

torch is imported at the top: without it this file errors, it never skips (CI installs torch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import onnxprune
from onnxprune.plan import Plan, TensorSlice
from onnxprune.torch import apply_plan
from onnxprune.torch.mapping import name_candidates, relation
from tests.torch_cases import ort_run, rel_err, torch_state, torchvision_case, transformers_case


def test_relation_recognises_each_exporter_transform():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    s = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    assert relation(w.copy(), w) == ("same", None)
    how, scale = relation(w * s[:, None, None, None], w)
    assert how == "scaled0" and np.allclose(scale, s, rtol=1e-5)
    t = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    assert relation(w * t[None, :, None, None], w)[0] == "scaled1"
    m = rng.standard_normal((5, 3)).astype(np.float32)
    assert relation(m.T.copy(), m) == ("transposed", None)
    assert relation(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), w) is None
    column = w.reshape(4, 12)[:, :1]
    assert relation(column * s[:, None], column) is None  # one entry per channel: no evidence


def test_name_candidates_strip_exporter_and_wrapper_prefixes():
    names = ["layer1.0.conv1.weight", "layer1.0.conv2.weight"]
    assert name_candidates("p_layer1_0_conv1_weight", names) == ["layer1.0.conv1.weight"]
    assert name_candidates("layer1.0.conv2.weight", names) == ["layer1.0.conv2.weight"]
    assert name_candidates("model.layer1.0.conv1.weight", names) == ["layer1.0.conv1.weight"]
    assert name_candidates("onnx::Conv_193", names) == []


def _placements(case, **kwargs):
    result = onnxprune.prune(case.path, ratio=0.4, **kwargs)
    return result, apply_plan(case.module, result.plan, case.path, pruned=result.model)


def test_resnet18_folded_convs_placed_by_name_under_dynamo_by_value_under_torchscript():
    targets = {}
    for exporter in ("dynamo", "torchscript"):
        _, applied = _placements(torchvision_case("resnet18", exporter))
        placements = applied.placements
        weights = {p.target for p in placements.values() if p.how == "scaled0"}
        targets[exporter] = weights
        conv = [p for p in placements.values() if p.target == "layer1.0.conv1.weight"]
        assert len(conv) == 1 and conv[0].how == "scaled0"  # BatchNorm bn1 folded into it
        assert conv[0].by == ("name" if exporter == "dynamo" else "value")
        if exporter == "torchscript":
            assert conv[0].onnx.startswith("onnx::Conv_")
        folded = {p.target for p in placements.values() if p.how == "folded-bias"}
        assert "layer1.0.conv1" in folded
        # the folded BatchNorms lost the channels their convolutions lost
        assert applied.shapes["layer1.0.bn1.running_var"] == (applied.shapes["layer1.0.conv1.weight"][0],)
    assert targets["dynamo"] == targets["torchscript"] and len(targets["dynamo"]) > 10


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_bert_matmul_weights_placed_transposed_by_value(exporter):
    case = transformers_case("bert", exporter)
    _, applied = _placements(case)
    ffn = [p for p in applied.placements.values() if p.target.endswith("intermediate.dense.weight")]
    assert ffn and all(p.how == "transposed" and p.by == "value" for p in ffn)
    assert all(p.onnx.startswith("val_" if exporter == "dynamo" else "onnx::MatMul_") for p in ffn)
    attn = case.module.model.encoder.layer[0].attention.self
    assert attn.num_attention_heads == 3 and attn.all_head_size == 3 * attn.attention_head_size


def test_refuses_plan_tensors_it_cannot_place_and_changes_nothing():
    case = torchvision_case("resnet18", "dynamo")
    result = onnxprune.prune(case.path, ratio=0.4)
    with torch.no_grad():  # this module is no longer the one exported: its conv cannot be matched
        case.module.layer2[0].conv1.weight.add_(torch.randn_like(case.module.layer2[0].conv1.weight))
    before = torch_state(case.module)
    with pytest.raises(onnxprune.PlanError, match=r"cannot place .*'layer2\.0\.conv1\.weight'"):
        apply_plan(case.module, result.plan, case.path, pruned=result.model)
    after = torch_state(case.module)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_refuses_a_tensor_that_is_not_in_the_onnx_model():
    case = torchvision_case("resnet18", "dynamo")
    plan = Plan(slices=(TensorSlice("no.such.weight", 0, 4, (0, 1), "out"),))
    with pytest.raises(onnxprune.PlanError, match=r"no\.such\.weight"):
        apply_plan(case.module, plan, case.path)


def test_updates_need_the_pruned_model():
    case = torchvision_case("resnet18", "torchscript")
    calib = {"input": np.random.default_rng(1).standard_normal((16, 3, 64, 64)).astype(np.float32)}
    result = onnxprune.prune(case.path, ratio=0.4, calibration=calib, compensate="bias")
    assert result.plan.updates
    before = torch_state(case.module)
    with pytest.raises(onnxprune.UsageError, match="pruned="):
        apply_plan(case.module, result.plan, case.path)
    assert all(torch.equal(before[k], v) for k, v in torch_state(case.module).items())


def test_folded_bias_update_lands_in_the_batchnorm_bias():
    case = torchvision_case("resnet18", "dynamo")
    calib = {"x": np.random.default_rng(1).standard_normal((16, 3, 64, 64)).astype(np.float32)}
    bn_bias = case.module.layer1[0].bn2.bias.detach().clone()
    result = onnxprune.prune(case.path, ratio=0.4, calibration=calib, compensate="bias")
    applied = apply_plan(case.module, result.plan, case.path, pruned=result.model)
    updated = {u.tensor for u in result.plan.updates}
    assert "layer1.0.conv2.weight_bias" in updated
    assert "layer1.0.bn2.bias" in applied.updated
    keep = next(s.keep for s in result.plan.slices if s.tensor == "layer1.0.conv2.weight" and s.axis == 0)
    assert not torch.allclose(case.module.layer1[0].bn2.bias.detach(), bn_bias[list(keep)])


class FlattenIntoLinear(torch.nn.Module):
    """torchcrepe's pattern: the flattened width is an attribute read by ``reshape``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.in_features = 8 * 4 * 4
        self.classifier = torch.nn.Linear(self.in_features, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.classifier(x.reshape(-1, self.in_features))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_width_attribute_feeding_a_reshape_follows_the_linear(tmp_path, exporter):
    torch.manual_seed(0)
    net = FlattenIntoLinear().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.1, 0.1)
        net.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net, (x,), str(path), dynamo=exporter == "dynamo", input_names=["x"], external_data=False
    )
    result = onnxprune.prune(path, ratio=0.5)
    apply_plan(net, result.plan, path, pruned=result.model)
    assert net.conv.out_channels == net.bn.num_features == 4
    assert net.in_features == net.classifier.in_features == 4 * 4 * 4
    want = ort_run(result.model, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert rel_err(net(x).numpy(), want) < 1e-5
