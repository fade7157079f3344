"""Residual-branch analysis (onnxprune/branches.py): which Adds are droppable branches, which are
not and why, on tiny hand-built graphs and on real exports."""

from __future__ import annotations

import onnx
import pytest

from onnxprune.branches import find_branches
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import Normalize, run_stages
from tests.conftest import MODELS, parse

HEAD = '<ir_version: 8, opset_import: ["" : 17]>'
W = "<float[4, 4] w = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}>"
W2 = "<float[4, 4] w = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, float[4, 4] v = {2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2}>"  # noqa: E501


def branches_of(text: str):
    return find_branches(onnx.shape_inference.infer_shapes(parse(text)))


def test_a_residual_branch_is_found_with_its_nodes_and_weights():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y) {W2} {{
      [r] h = Relu(x)
      [m1] a = MatMul(h, w)
      [act] b = Relu(a)
      [m2] f = MatMul(b, v)
      [add] y = Add(h, f) }}""")
    (branch,) = found.branches
    assert (branch.add, branch.input, branch.branch, branch.output) == ("add", "h", "f", "y")
    assert branch.nodes == ("a", "b", "f") and branch.weights == ("v", "w")
    assert not branch.post_norm


def test_the_branch_may_be_either_input_of_the_add():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y) {W} {{
      [r] h = Relu(x)
      [m] f = MatMul(h, w)
      [add] y = Add(f, h) }}""")
    assert [(b.input, b.branch) for b in found.branches] == [("h", "f")]


def test_a_branch_whose_inner_tensor_also_feeds_elsewhere_is_not_droppable():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y, float[1, 4] z) {W2} {{
      [r] h = Relu(x)
      [m1] a = MatMul(h, w)
      [m2] f = MatMul(a, v)
      [add] y = Add(h, f)
      [other] z = Neg(a) }}""")
    assert found.branches == ()
    (rejected,) = [r for r in found.rejected if r.add == "add"]
    assert "projection shortcut" in rejected.reason or "read" in rejected.reason


def test_a_branch_tensor_read_by_another_node_is_not_droppable():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y, float[1, 4] z) {W} {{
      [r] h = Relu(x)
      [m] f = MatMul(h, w)
      [add] y = Add(h, f)
      [other] z = Neg(f) }}""")
    assert found.branches == ()
    assert any("f is read by more than the Add" in r.reason for r in found.rejected)


def test_a_projection_shortcut_is_not_a_residual_branch():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y) {W2} {{
      [r] h = Relu(x)
      [m1] f = MatMul(h, w)
      [m2] s = MatMul(h, v)
      [add] y = Add(s, f) }}""")
    assert found.branches == ()
    assert "projection shortcut" in found.rejected[0].reason


def test_a_branch_reading_a_second_tensor_computed_from_x_is_not_single_entry():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y, float[1, 4] t) {W} {{
      [r] h = Relu(x)
      [n] t = Neg(h)
      [m] a = MatMul(h, w)
      [mix] f = Add(a, t)
      [add] y = Add(h, f) }}""")
    assert [b.add for b in found.branches] == []
    assert any("not single-entry" in r.reason for r in found.rejected if r.add == "add")


def test_side_inputs_not_computed_from_x_are_allowed_and_stay():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x, float[1, 4] mask) => (float[1, 4] y) {W} {{
      [r] h = Relu(x)
      [m] a = MatMul(h, w)
      [masked] f = Mul(a, mask)
      [add] y = Add(h, f) }}""")
    (branch,) = found.branches
    assert branch.side_inputs == ("mask",) and branch.nodes == ("a", "f")


def test_a_shape_of_x_is_not_a_second_entry():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y, int64[2] s) {W} {{
      [r] h = Relu(x)
      [sh] s = Shape(h)
      [m] a = MatMul(h, w)
      [re] f = Reshape(a, s)
      [add] y = Add(h, f) }}""")
    (branch,) = found.branches
    assert branch.side_inputs == ("s",)


def test_an_elementwise_residual_without_weights_is_not_a_block():
    # the x + 0.044715 x^3 inside a tanh GELU
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y) <float c = {{0.044715}}> {{
      [r] h = Relu(x)
      [cube] p = Mul(h, h)
      [cube2] q = Mul(p, c)
      [add] y = Add(h, q) }}""")
    assert found.branches == ()
    assert "not a block" in found.rejected[0].reason


def test_a_broadcasting_add_is_not_a_residual():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[3, 4] y) <float[4, 4] w = {{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}}, float[3, 1] k = {{1, 2, 3}}> {{
      [r] h = Relu(x)
      [m] a = MatMul(h, w)
      [bc] f = Mul(a, k)
      [add] y = Add(h, f) }}""")  # noqa: E501
    assert found.branches == ()
    assert "same known shape" in found.rejected[0].reason


LN_PARAMS = "float[4] s = {1, 1, 1, 1}, float[4] b = {0, 0, 0, 0}"


def test_post_ln_is_flagged():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] z) {W[:-1]}, {LN_PARAMS}> {{
      [r] h = Relu(x)
      [m] f = MatMul(h, w)
      [add] y = Add(h, f)
      [ln] z = LayerNormalization(y, s, b) }}""")
    (branch,) = found.branches
    assert branch.post_norm and "LN(x)" in branch.describe()


def test_a_weight_shared_with_the_rest_of_the_graph_stays():
    found = branches_of(f"""{HEAD}
    g (float[1, 4] x) => (float[1, 4] y) {W} {{
      [m0] h = MatMul(x, w)
      [m] f = MatMul(h, w)
      [add] y = Add(h, f) }}""")
    (branch,) = found.branches
    assert branch.weights == ()


def normalized(path):
    session = run_stages(PruneSession.open(str(path), PruneOptions(None)), [Normalize()])
    return session.model


# (model, droppable branches): every identity block; projection shortcuts, embeddings' sums, the
# attention mask's Add and the GELU's inner Add are not
REAL = [
    ("torchvision/resnet18_dynamo.onnx", 5),
    ("torchvision/resnet18_torchscript.onnx", 5),
    ("torchvision/resnet50_dynamo.onnx", 12),
    ("torchvision/mobilenet_v2_dynamo.onnx", 11),
    ("torchvision/mobilenet_v2_torchscript.onnx", 11),
    ("torchvision/convnext_tiny_dynamo.onnx", 18),
    ("torchvision/convnext_tiny_torchscript.onnx", 18),
    ("transformers/bert_dynamo.onnx", 4),
    ("transformers/bert_torchscript.onnx", 4),
    ("transformers/bert_eager_torchscript.onnx", 4),
    ("transformers/gpt2_dynamo.onnx", 4),
    ("transformers/gpt2_torchscript.onnx", 4),
    ("transformers/vit_dynamo.onnx", 4),
    ("transformers/vit_torchscript.onnx", 4),
    ("transformers/llama_gqa_dynamo.onnx", 4),
    ("transformers/llama_gqa_torchscript.onnx", 4),
]


@pytest.mark.parametrize(("name", "count"), REAL, ids=[r[0] for r in REAL])
def test_real_exports_have_their_residual_blocks_found(name, count):
    found = find_branches(normalized(MODELS / name))
    assert len(found.branches) == count, [str(r) for r in found.rejected]
    assert all(b.weights for b in found.branches)  # each takes weights with it


def test_bert_post_ln_and_gpt2_pre_ln():
    bert = find_branches(normalized(MODELS / "transformers/bert_dynamo.onnx"))
    gpt2 = find_branches(normalized(MODELS / "transformers/gpt2_dynamo.onnx"))
    assert all(b.post_norm for b in bert.branches)
    # pre-LN: the next block's LayerNorm and Add read each sum; only the last feeds ln_f alone
    assert [b.post_norm for b in gpt2.branches] == [False, False, False, True]
