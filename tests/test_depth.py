"""Depth pruning (onnxprune/depth.py, passes/drop_branches.py): real exports of both exporters
lose 1-2 residual branches and stay valid and mask-equivalent; plans record and replay the drops;
scores and choices; refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.branches import ResidualBranch
from onnxprune.cli import main
from onnxprune.depth import DepthCandidate, choose
from onnxprune.errors import EXIT_OK, PlanError, UsageError
from onnxprune.fidelity import check_fidelity
from onnxprune.plan import DroppedBranch, Plan
from onnxprune.weights import weight_tensors
from tests.conftest import MODELS

MODELS_DEPTH = [
    "torchvision/resnet18_dynamo.onnx",
    "torchvision/resnet18_torchscript.onnx",
    "torchvision/mobilenet_v2_dynamo.onnx",
    "torchvision/mobilenet_v2_torchscript.onnx",
    "torchvision/convnext_tiny_dynamo.onnx",
    "torchvision/convnext_tiny_torchscript.onnx",
    "transformers/bert_dynamo.onnx",
    "transformers/bert_torchscript.onnx",
    "transformers/gpt2_dynamo.onnx",
    "transformers/gpt2_torchscript.onnx",
    "transformers/vit_dynamo.onnx",
    "transformers/llama_gqa_torchscript.onnx",
]


def text_shapes(model: onnx.ModelProto, batch: int, seq: int) -> dict[str, list[int]]:
    return {
        vi.name: [batch, seq]
        for vi in model.graph.input
        if len(vi.type.tensor_type.shape.dim) == 2 and not vi.type.tensor_type.shape.dim[1].dim_value
    }


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("name", MODELS_DEPTH)
def test_dropping_blocks_keeps_a_valid_mask_equivalent_model(name, count):
    path = MODELS / name
    original = onnx.load(path)
    result = onnxprune.prune(path, drop_blocks=count)
    assert len(result.plan.dropped) == count
    assert result.plan.slices == ()
    report = onnxprune.validate(original, result.model, result.plan, input_shapes=text_shapes(original, 2, 7))
    assert report, str(report)
    assert result.report.params_after < result.report.params_before
    assert result.report.macs_after < result.report.macs_before
    dropped_adds = {d.add for d in result.plan.dropped}
    assert not dropped_adds & {n.name for n in result.model.graph.node}
    # the dropped branches' weights left the file
    depth = result.report.depth
    assert depth is not None and len(depth["dropped"]) == count
    assert len(weight_tensors(result.model)) < len(weight_tensors(original))


def test_without_the_mask_the_drop_is_not_the_original():
    # parity is not vacuous: the pruned model differs from the unmasked original
    path = MODELS / "torchvision/resnet18_dynamo.onnx"
    result = onnxprune.prune(path, drop_blocks=1)
    report = onnxprune.validate(path, result.model, Plan(dropped=()))
    assert not report.parity


def test_depth_then_width_is_mask_equivalent():
    for name in ("torchvision/resnet18_dynamo.onnx", "transformers/bert_torchscript.onnx"):
        original = onnx.load(MODELS / name)
        result = onnxprune.prune(original, drop_blocks=1, ratio=0.3)
        assert result.plan.slices and result.plan.dropped
        report = onnxprune.validate(
            original, result.model, result.plan, input_shapes=text_shapes(original, 1, 5)
        )
        assert report, str(report)


def test_the_plan_records_the_branch_input_and_replays(tmp_path):
    path = MODELS / "torchvision/convnext_tiny_torchscript.onnx"
    result = onnxprune.prune(path, drop_blocks=2, ratio=0.25)
    plan_path = tmp_path / "plan.json"
    result.plan.save(plan_path)
    data = json.loads(plan_path.read_text())
    assert all(set(d) == {"add", "branch", "input"} for d in data["dropped"])
    replay = onnxprune.prune(path, plan=plan_path)
    assert replay.plan.dropped == result.plan.dropped
    assert replay.plan.slices == result.plan.slices
    assert onnxprune.validate(path, replay.model, replay.plan)
    assert replay.model.SerializeToString() == result.model.SerializeToString()


def test_an_old_plan_without_the_branch_input_replays():
    path = MODELS / "torchvision/resnet18_torchscript.onnx"
    result = onnxprune.prune(path, drop_blocks=1)
    (entry,) = result.plan.dropped
    old = Plan(dropped=(DroppedBranch(entry.add, entry.branch),))
    replay = onnxprune.prune(path, plan=old)
    assert [d.add for d in replay.plan.dropped] == [entry.add]


def test_a_plan_dropping_a_branch_the_model_does_not_have_is_refused():
    path = MODELS / "torchvision/resnet18_torchscript.onnx"
    plan = Plan(dropped=(DroppedBranch("/layer2/layer2.0/Add", "/layer2/layer2.0/conv2/Conv_output_0"),))
    with pytest.raises(PlanError, match="projection shortcut"):
        onnxprune.prune(path, plan=plan)


def test_weight_norm_drops_the_zero_initialised_blocks_first():
    # ResNet with zero-initialised last BatchNorm in some blocks (models/make_models.py): those
    # blocks add nothing, and the weight-norm proxy finds them
    path = MODELS / "resnet_zero_init_dynamo.onnx"
    candidates = onnxprune.prune(path, drop_blocks=1).report.depth["candidates"]
    zeros = [c for c in candidates if c["score"] == 0.0]
    assert zeros, candidates
    result = onnxprune.prune(path, drop_blocks=len(zeros))
    assert {d.add for d in result.plan.dropped} == {c["add"] for c in zeros}
    # a zero branch adds exactly zero: the model computes what the original computes
    fidelity = check_fidelity(path, result.model)
    assert all(o.rel_err is not None and o.rel_err < 1e-6 for o in fidelity.outputs), str(fidelity)


def test_block_influence_ranks_by_the_change_to_the_residual_stream():
    path = MODELS / "transformers/bert_dynamo.onnx"
    rng = np.random.default_rng(0)
    feeds = [
        {
            "input_ids": rng.integers(0, 100, (2, 6)).astype(np.int64),
            "attention_mask": np.ones((2, 6), np.int64),
            "token_type_ids": np.zeros((2, 6), np.int64),
        }
        for _ in range(3)
    ]
    model = onnx.load(path)
    names = {i.name for i in model.graph.input}
    feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
    result = onnxprune.prune(path, drop_blocks=1, calibration=feeds, holdout=0.0)
    depth = result.report.depth
    assert depth["criterion"] == "block-influence"
    scores = {c["add"]: c["score"] for c in depth["candidates"]}
    assert all(0.0 <= s <= 2.0 for s in scores.values())
    assert result.plan.dropped[0].add == min(scores, key=scores.get)
    fidelity = onnxprune.prune(
        path, drop_blocks=1, calibration=feeds, holdout=0.0, depth_criterion="drop-fidelity"
    )
    assert fidelity.report.depth["criterion"] == "drop-fidelity"
    assert onnxprune.validate(path, fidelity.model, fidelity.plan, input_shapes=text_shapes(model, 1, 4))


def candidate(add: str, nodes: tuple[str, ...], score: float) -> DepthCandidate:
    branch = ResidualBranch(add, nodes[-1], "x", f"{add}_out", nodes, ())
    return DepthCandidate(branch, macs=10, params=1, score=score, criterion="weight-norm")


def test_choose_takes_the_lowest_scores_and_skips_nested_branches():
    outer = candidate("outer", ("a", "b", "inner_out", "c"), 0.1)
    inner = candidate("inner", ("a", "b"), 0.05)
    other = candidate("other", ("d",), 0.2)
    assert [c.branch.add for c in choose([outer, inner, other], 2)] == ["inner", "other"]
    assert [c.branch.add for c in choose([outer, other], 1)] == ["outer"]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"drop_blocks": 99}, UsageError, "droppable branches"),
        ({"drop_blocks": 1, "compensate": "bias"}, UsageError, "compensation is not supported"),
        ({"drop_blocks": 1, "depth_ratio": 0.5}, UsageError, "not both"),
        ({"drop_blocks": 1, "depth_criterion": "block-influence"}, UsageError, "needs calibration"),
        ({"depth_ratio": 1.5}, UsageError, "outside"),
        ({"drop_blocks": 1, "target_macs": 0.5}, UsageError, "budgets"),
    ],
)
def test_bad_depth_requests_are_usage_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        onnxprune.prune(MODELS / "torchvision/resnet18_dynamo.onnx", **kwargs)


def test_depth_ratio_rounds_over_the_candidates():
    result = onnxprune.prune(MODELS / "torchvision/convnext_tiny_dynamo.onnx", depth_ratio=0.25)
    assert len(result.plan.dropped) == round(0.25 * 18)


def test_cli_drop_blocks_validates_and_writes_the_plan(tmp_path, capsys):
    out, plan = tmp_path / "out.onnx", tmp_path / "plan.json"
    path = MODELS / "torchvision/mobilenet_v2_dynamo.onnx"
    code = main(
        [str(path), str(out), "--drop-blocks", "2", "--validate", "--bench-runs", "2", "--plan", str(plan)]
    )
    text = capsys.readouterr().out
    assert code == EXIT_OK, text
    assert "dropped residual branch" in text and "parity ok" in text
    assert len(json.loads(plan.read_text())["dropped"]) == 2


def test_fidelity_to_the_original_is_reported_on_held_out_samples():
    path = MODELS / "torchvision/resnet18_dynamo.onnx"
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((2, 3, 64, 64)).astype(np.float32)} for _ in range(4)]
    name = onnx.load(path).graph.input[0].name
    feeds = [{name: f["x"]} for f in feeds]
    result = onnxprune.prune(path, drop_blocks=2, calibration=feeds, holdout=0.5)
    fidelity = result.report.fidelity
    assert fidelity is not None and fidelity["feeds"] == 2
    (output,) = fidelity["outputs"]
    assert output["cosine"] < 1.0  # dropping changes the function: fidelity measures by how much
