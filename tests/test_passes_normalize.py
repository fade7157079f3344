"""Normalization passes (passes/normalize.py): Reshape shape resolution, constant Identities
bypassed, merged per-channel constants unshared."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.passes import BypassConstantIdentities, ResolveReshapeShapes, UnshareVectorConstants
from tests.pass_models import declare, parse, value_info

# -- ResolveReshapeShapes -------------------------------------------------------------------


def flatten_model(declared: list[int | str | None], x: str = "N, 8, 1, 1") -> onnx.ModelProto:
    model = parse(
        f"""g (float[{x}] x) => (float[N, 8] z) <int64[2] s = {{-1, 8}}> {{
            y = Reshape (x, s)
            z = Relu (y) }}"""
    )
    declare(model, "y", declared)
    return model


def test_flatten_reshape_takes_the_input_batch_symbol():
    model = flatten_model(["unk__0", 8])
    result = ResolveReshapeShapes()(model)
    assert value_info(model)["y"] == ["N", 8]
    assert result.modified and result.stats == {"reshape_shapes_resolved": 1}
    again = ResolveReshapeShapes()(model)  # nothing left to resolve
    assert not again.modified and again.stats == {"reshape_shapes_resolved": 0}


def test_flatten_reshape_fills_an_unnamed_dim():
    model = flatten_model([None, 8])
    assert ResolveReshapeShapes()(model).modified
    assert value_info(model)["y"] == ["N", 8]


@pytest.mark.parametrize("declared", [[3, 8], ["M", 8]])
def test_static_or_named_dims_are_not_overwritten(declared):
    model = flatten_model(declared)
    result = ResolveReshapeShapes()(model)
    assert not result.modified
    assert value_info(model)["y"] == declared


def test_reshape_minus_one_becomes_a_static_size():
    model = parse(
        """g (float[N, 6] x) => (float[N, 2, 3] z) <int64[3] s = {0, 2, -1}> {
            y = Reshape (x, s)
            z = Relu (y) }"""
    )
    declare(model, "y", ["N", 2, "unk__1"])
    assert ResolveReshapeShapes()(model).modified
    assert value_info(model)["y"] == ["N", 2, 3]


def test_reshape_without_value_info_is_left_alone():
    model = flatten_model(["unk__0", 8])
    del model.graph.value_info[:]
    result = ResolveReshapeShapes()(model)
    assert not result.modified
    assert not model.graph.value_info


# --- BypassConstantIdentities: an Identity of a constant is the constant ------------------------

MERGED_WEIGHT = """g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
    h = Conv <pads = [1, 1, 1, 1]> (x, w)
    r = Relu(h)
    w1 = Identity(w)
    w2 = Identity(w1)
    y = Conv <pads = [1, 1, 1, 1]> (r, w2) }"""


def test_convs_read_a_weight_the_exporter_merged_directly():
    # the TorchScript exporter hands a zero-initialised layer's weight to its twins this way
    model = parse(MERGED_WEIGHT, {"w": np.zeros((4, 4, 3, 3), np.float32)})
    x = np.random.default_rng(2).standard_normal((1, 4, 6, 6)).astype(np.float32)
    before = run(model, {"x": x})
    result = BypassConstantIdentities()(model)
    assert result.modified and result.stats["identities_bypassed"] == 2  # a chain of two
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Conv"]
    assert [n.input[1] for n in model.graph.node if n.op_type == "Conv"] == ["w", "w"]
    np.testing.assert_array_equal(run(model, {"x": x})[0], before[0])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("""g (float[4] x) => (float[4] y, float[4] c) { c = Identity(b)  y = Add(x, c) }""", "graph output"),
        ("""g (float[4] x) => (float[4] y) { c = Identity(x)  y = Add(c, b) }""", "not a constant"),
        (
            """g (float[4] x, bool k) => (float[4] y) {
                c = Identity(b)
                y = If(k) <then_branch = t () => (float[4] o) { o = Add(x, c) },
                            else_branch = e () => (float[4] o) { o = Mul(x, c) }> }""",
            "read inside a subgraph",
        ),
    ],
    ids=["graph-output", "activation", "subgraph"],
)
def test_identities_that_stay(text, why):
    model = parse(text, {"b": np.arange(4, dtype=np.float32)})
    before = model.SerializeToString()
    assert not BypassConstantIdentities()(model).modified, why
    assert model.SerializeToString() == before


def test_a_merged_weight_is_pruned_as_a_tied_weight_not_pinned():
    # stem -> conv A (w) -> conv B (w through Identity) -> head: w ties A's and B's filters and
    # inputs, so the stem's, A's and B's channels form one group
    model = parse(
        """g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
            s = Conv <pads = [1, 1, 1, 1]> (x, w0)
            rs = Relu(s)
            a = Conv <pads = [1, 1, 1, 1]> (rs, w)
            ra = Relu(a)
            wb = Identity(w)
            b = Conv <pads = [1, 1, 1, 1]> (ra, wb)
            rb = Relu(b)
            y = Conv (rb, wh) }""",
        {
            name: np.random.default_rng(3).standard_normal(shape).astype(np.float32)
            for name, shape in (("w0", (8, 4, 3, 3)), ("w", (8, 8, 3, 3)), ("wh", (4, 8, 1, 1)))
        },
    )
    result = onnxprune.prune(model, ratio=0.5, round_to=1)
    assert result.report.groups_pruned == 1 and result.report.groups_found == 3  # x and y pinned
    assert {(s.tensor, s.axis) for s in result.plan.slices} == {("w0", 0), ("w", 0), ("w", 1), ("wh", 1)}
    assert onnxprune.validate(model, result.model, result.plan)


# --- UnshareVectorConstants: merged per-channel constants get one copy per reader -------------

SHARED_BIAS = """g (float[1, 4, 6, 6] x) => (float[1, 8, 6, 6] y) {
    b1 = Identity(b)
    b2 = Identity(b)
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    c2 = Conv <pads = [1, 1, 1, 1]> (x, w2, b2)
    y = Concat <axis = 1> (c1, c2) }"""


def shared_bias_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
        "b": np.zeros(4, np.float32),  # what the TorchScript exporter merges: equal zero biases
    }
    return parse(SHARED_BIAS, weights)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def readers_of(model: onnx.ModelProto) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node.op_type)
    return found


def test_a_bias_merged_through_identity_nodes_becomes_one_constant_per_conv():
    model = shared_bias_model()
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    before = run(model, {"x": x})
    result = UnshareVectorConstants()(model)
    assert result.modified and result.stats["constants_unshared"] == 2
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Conv", "Concat"]  # the Identities went
    inits = {t.name for t in model.graph.initializer}
    assert {"b1", "b2"} <= inits  # each conv reads a constant of its own, named as the Identity output
    np.testing.assert_array_equal(run(model, {"x": x})[0], before[0])


def test_a_bias_read_directly_by_two_nodes_is_copied_for_the_second():
    model = parse(
        """g (float[2, 4] x) => (float[2, 4] y, float[2, 4] z) {
            y = Add(x, b)
            z = Mul(x, b) }""",
        {"b": np.arange(1, 5, dtype=np.float32)},
    )
    x = np.ones((2, 4), np.float32)
    before = run(model, {"x": x})
    assert UnshareVectorConstants()(model).modified
    add, mul = model.graph.node
    assert add.input[1] == "b" and mul.input[1] not in ("b", "")  # the first reader keeps the name
    copies = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(copies[mul.input[1]], copies["b"])
    for got, want in zip(run(model, {"x": x}), before, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("text", "weights", "why"),
    [
        (
            """g (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) { y = MatMul(x, w)  z = MatMul(x, w) }""",
            {"w": np.ones((4, 3), np.float32)},
            "a matrix read twice is a tied weight",
        ),
        (
            """g (float[2, 4] x) => (float[2] y, float[2, 4] z) { y = MatMul(x, v)  z = Add(x, v) }""",
            {"v": np.ones(4, np.float32)},
            "a vector a MatMul sums over is not a per-channel operand",
        ),
        (
            """g (float[2, 4] x) => (float[2, 4] y) { y = Add(x, b) }""",
            {"b": np.ones(4, np.float32)},
            "one reader: nothing is shared",
        ),
        (
            """g (float[2, 4] x) => (float[2, 4] y, float[2, 4] z) { y = Add(x, s)  z = Mul(x, s) }""",
            {"s": np.ones(1, np.float32)},
            "a scalar has no channels",
        ),
        (
            """g (float[2, 4] x) => (float[2, 4] y, float[2, 4] z) { y = Add(x, b)  z = Mul(x, b) }""",
            {"b": np.ones(4, np.int64).astype(np.float32)},
            "listed in keep (a weight the user can override as a graph input)",
        ),
    ],
    ids=["tied-matrix", "contracted-vector", "single-reader", "scalar", "kept"],
)
def test_constants_that_are_not_merged_per_channel_operands_stay_shared(text, weights, why):
    model = parse(text, weights)
    before = model.SerializeToString()
    result = UnshareVectorConstants(keep={"b"})(model)
    assert not result.modified, why
    assert model.SerializeToString() == before


def test_a_constant_read_inside_a_subgraph_stays_shared():
    model = parse(
        """g (float[4] x, bool c) => (float[4] y, float[4] z) {
            y = Add(x, b)
            z = If(c) <then_branch = t () => (float[4] o) { o = Add(x, b) },
                        else_branch = e () => (float[4] o) { o = Mul(x, b) }> }""",
        {"b": np.arange(4, dtype=np.float32)},
    )
    assert not UnshareVectorConstants()(model).modified
