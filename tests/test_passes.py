"""Graph passes on tiny hand-built models: the Repeat fixed point, memoized shape inference and
its weightless skeleton, value_info shrinking after slicing, Reshape shape resolution and dead
node removal."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
import onnxprune.shapeinfer as shapes_mod
from onnxprune.passes import (
    BypassConstantIdentities,
    InferShapes,
    Pass,
    PassResult,
    RemoveDeadNodes,
    Repeat,
    ResolveReshapeShapes,
    ShapeMemo,
    ShrinkValueInfo,
    SliceWeights,
    UnshareVectorConstants,
)

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def parse(text: str, weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A checked model from ONNX text, with `weights` added as initializers."""
    model = onnx.parser.parse_model(HEADER + text)
    for name, array in (weights or {}).items():
        model.graph.initializer.append(numpy_helper.from_array(array, name))
    onnx.checker.check_model(model)
    return model


def dims_of(info: onnx.ValueInfoProto) -> list[int | str]:
    """Dims of a value: numbers, symbol names, or '' for an unnamed open dim."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in info.type.tensor_type.shape.dim]


def value_info(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    return {vi.name: dims_of(vi) for vi in model.graph.value_info}


def declare(model: onnx.ModelProto, name: str, dims: list[int | str | None]) -> None:
    model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))


# -- Repeat ---------------------------------------------------------------------------------


class Fake(Pass):
    """Changes the model (a visible edit: its doc_string grows) on its first `changes` calls."""

    def __init__(self, label: str, changes: int = 0) -> None:
        self.label = label
        self.changes = changes
        self.calls = 0

    @property
    def name(self) -> str:
        return self.label

    def call(self, model: onnx.ModelProto) -> PassResult:
        self.calls += 1
        modified = self.calls <= self.changes
        if modified:
            model.doc_string += self.label
        return PassResult(self.name, modified, {f"{self.label}_calls": 1})


class Always(Fake):
    def __init__(self, label: str) -> None:
        super().__init__(label, changes=10**9)


def tiny() -> onnx.ModelProto:
    return parse("g (float[2] x) => (float[2] y) { y = Relu(x) }")


def test_repeat_runs_each_pass_once_when_nothing_changes():
    passes = [Fake("a"), Fake("b"), Fake("c")]
    model = tiny()
    result = Repeat(passes)(model)
    assert [p.calls for p in passes] == [1, 1, 1]
    assert not result.modified
    assert result.stats == {"a_calls": 1, "b_calls": 1, "c_calls": 1, "rounds": 1}
    assert model.doc_string == ""


def test_repeat_first_pass_changing_twice():
    # a+ b c a+ b c a: after a's third (unchanged) run, b and c have seen the model as it is
    passes = [Fake("a", changes=2), Fake("b"), Fake("c")]
    model = tiny()
    result = Repeat(passes)(model)
    assert [p.calls for p in passes] == [3, 2, 2]
    assert result.modified
    assert result.stats["rounds"] == 3  # 7 steps of 3 passes
    assert result.stats["a_calls"] == 3 and result.stats["b_calls"] == 2
    assert model.doc_string == "aa"


def test_repeat_middle_pass_changing_twice():
    # a b+ c a b+ c a b: a and c need a run after each of b's changes, b one more to see none
    passes = [Fake("a"), Fake("b", changes=2), Fake("c")]
    result = Repeat(passes)(tiny())
    assert [p.calls for p in passes] == [3, 3, 2]
    assert result.modified
    assert result.stats["rounds"] == 3  # 8 steps


def test_repeat_last_pass_changing_once():
    # a b c+ a b c: the second cycle runs whole, none after it
    passes = [Fake("a"), Fake("b"), Fake("c", changes=1)]
    result = Repeat(passes)(tiny())
    assert [p.calls for p in passes] == [2, 2, 2]
    assert result.stats["rounds"] == 2


def test_repeat_single_pass_reaches_its_fixed_point():
    only = Fake("a", changes=3)
    result = Repeat([only])(tiny())
    assert only.calls == 4
    assert result.stats["rounds"] == 4


@pytest.mark.parametrize("max_rounds", [1, 5])
def test_repeat_max_rounds_bounds_an_always_changing_pass(max_rounds):
    always, quiet = Always("a"), Fake("b")
    model = tiny()
    result = Repeat([always, quiet], max_rounds=max_rounds)(model)
    assert always.calls == max_rounds
    assert quiet.calls == max_rounds
    assert result.modified
    assert result.stats["rounds"] == max_rounds
    assert model.doc_string == "a" * max_rounds


def test_repeat_of_no_passes_does_nothing():
    result = Repeat([])(tiny())
    assert not result.modified
    assert result.stats == {"rounds": 0}


# -- InferShapes and ShapeMemo --------------------------------------------------------------

CONV_TEXT = """g (float[N, 3, 8, 8] x) => (float[N, 64] y) <int64[2] s = {0, -1}> {
    h = Conv <pads = [1, 1, 1, 1]> (x, w)
    r = Relu (h)
    p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
    y = Reshape (p, s) }"""


def conv_model(filters: int = 4) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv (4 filters, 108 weights: no data in the skeleton) -> Relu -> MaxPool ->
    Reshape to [N, 64] by an int64 shape constant [0, -1]."""
    weights = {"w": np.ones((filters, 3, 3, 3), dtype=np.float32)}
    return parse(CONV_TEXT, weights)


@pytest.fixture
def infer_calls(monkeypatch) -> list[onnx.ModelProto]:
    """Every model ONNX's shape inference runs on, through InferShapes."""
    calls: list[onnx.ModelProto] = []
    real = shapes_mod._infer_onnx

    def counting(model: onnx.ModelProto) -> onnx.ModelProto:
        calls.append(model)
        return real(model)

    monkeypatch.setattr(shapes_mod, "_infer_onnx", counting)
    return calls


def test_shared_memo_infers_an_unchanged_graph_once(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    first = InferShapes(memo=memo)(model)
    second = InferShapes(memo=memo)(model)
    assert len(infer_calls) == 1
    assert first.modified and not second.modified
    assert value_info(model) == {"h": ["N", 4, 8, 8], "r": ["N", 4, 8, 8], "p": ["N", 4, 4, 4]}


def test_value_info_is_what_onnx_inference_gives(infer_calls):
    model = conv_model()
    expected = onnx.shape_inference.infer_shapes(model, data_prop=True)
    InferShapes()(model)
    got = [vi.SerializeToString() for vi in model.graph.value_info]
    assert got == [vi.SerializeToString() for vi in expected.graph.value_info]
    assert len(got) == 3


def test_memo_infers_again_after_a_node_changes(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.node[2].attribute[0].ints[:] = [1, 1]  # MaxPool kernel 2x2 -> 1x1
    result = InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert not result.modified  # stride 2 still halves: (8 - 1) // 2 + 1 = 4
    assert value_info(model)["p"] == ["N", 4, 4, 4]
    model.graph.node[2].attribute[1].ints[:] = [1, 1]  # strides 1
    assert InferShapes(memo=memo)(model).modified
    assert len(infer_calls) == 3
    assert value_info(model)["p"] == ["N", 4, 8, 8]


def test_memo_infers_again_after_a_node_is_added(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.node.insert(2, helper.make_node("Sigmoid", ["r"], ["q"]))
    model.graph.node[3].input[0] = "q"
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["q"] == ["N", 4, 8, 8]


def test_memo_infers_again_when_a_weight_changes_dims(infer_calls):
    # the weight has no data in the skeleton; its dims still decide the conv's output
    memo = ShapeMemo()
    model = conv_model(filters=4)
    InferShapes(memo=memo)(model)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones((6, 3, 3, 3), np.float32), "w"))
    assert model.graph.initializer[1].name == "w"
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["h"] == ["N", 6, 8, 8]


def test_memo_does_not_infer_again_when_only_weight_values_change(infer_calls):
    memo = ShapeMemo()
    model = conv_model()
    InferShapes(memo=memo)(model)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"))
    assert not InferShapes(memo=memo)(model).modified
    assert len(infer_calls) == 1


def test_memo_infers_again_when_a_shape_constant_changes(infer_calls):
    memo = ShapeMemo()
    model = parse(
        """g (float[N, 8] x) => (float[N, 8] y) <int64[3] s = {0, 2, 4}> {
            h = Reshape (x, s)
            y = Flatten (h) }"""
    )
    InferShapes(memo=memo)(model)
    assert value_info(model)["h"] == ["N", 2, 4]
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([0, 4, 2], np.int64), "s"))
    InferShapes(memo=memo)(model)
    assert len(infer_calls) == 2
    assert value_info(model)["h"] == ["N", 4, 2]


def test_without_a_shared_memo_each_instance_infers(infer_calls):
    model = conv_model()
    first, second = InferShapes(), InferShapes()
    first(model)
    second(model)
    assert len(infer_calls) == 2
    first(model)  # its own memo remembers the last graph it saw
    assert len(infer_calls) == 2


def test_memo_of_capacity_zero_infers_every_time_without_digesting(infer_calls, monkeypatch):
    digests = []
    original = shapes_mod._Pieces.digest
    monkeypatch.setattr(shapes_mod._Pieces, "digest", lambda self: digests.append(1) or original(self))
    model = conv_model()
    infer = InferShapes(memo=ShapeMemo(capacity=0))
    infer(model)
    infer(model)
    assert len(infer_calls) == 2
    assert not digests


def test_skeleton_declares_large_float_weights_as_inputs_and_keeps_shape_constants():
    model = conv_model()
    small = numpy_helper.from_array(np.ones(64, np.float32), "small_float")
    large_int = numpy_helper.from_array(np.arange(4096, dtype=np.int64), "large_int")
    model.graph.initializer.extend([small, large_int])
    model.graph.output[0].type.tensor_type.ClearField("shape")  # inference must find it
    skeleton = onnx.ModelProto.FromString(shapes_mod._Pieces.of(model, []).serialized())
    kept = {t.name: t for t in skeleton.graph.initializer}
    assert set(kept) == {"s", "small_float", "large_int"}
    assert numpy_helper.to_array(kept["s"]).tolist() == [0, -1]
    inputs = {vi.name: vi for vi in skeleton.graph.input}
    assert set(inputs) == {"x", "w"}
    assert inputs["w"].type.tensor_type.elem_type == TensorProto.FLOAT
    assert dims_of(inputs["w"]) == [4, 3, 3, 3]
    assert not skeleton.graph.value_info
    # the Reshape's output shape is still inferred: its target has its data in the skeleton
    # (without it, inference would know the rank at most)
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    out = {vi.name: dims_of(vi) for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    assert out["y"] == ["N", 64]
    assert out["h"] == ["N", 4, 8, 8]


def test_skeleton_drops_float_weights_over_64_elements():
    model = conv_model()
    model.graph.initializer.append(numpy_helper.from_array(np.ones(65, np.float32), "bias65"))
    skeleton = onnx.ModelProto.FromString(shapes_mod._Pieces.of(model, []).serialized())
    assert "bias65" not in {t.name for t in skeleton.graph.initializer}
    assert "bias65" in {vi.name for vi in skeleton.graph.input}


def test_infer_shapes_fills_an_undeclared_output_and_keeps_the_weights():
    model = conv_model()
    model.graph.output[0].type.tensor_type.ClearField("shape")  # the output type comes from inference
    InferShapes()(model)
    assert dims_of(model.graph.output[0]) == ["N", 64]
    assert {t.name for t in model.graph.initializer} == {"s", "w"}  # the model keeps its weights
    assert "w" not in {vi.name for vi in model.graph.input}


# -- ShrinkValueInfo ------------------------------------------------------------------------


def shrink_model() -> onnx.ModelProto:
    model = parse(
        """g (float[N, 3, 4, 4] x) => (float[N, 2, 4, 4] y) {
            h = Conv (x, w1)
            r = Relu (h)
            y = Conv (r, w2) }""",
        {"w1": np.ones((8, 3, 1, 1), np.float32), "w2": np.ones((2, 8, 1, 1), np.float32)},
    )
    declare(model, "h", ["N", 8, 4, 4])
    declare(model, "r", ["N", "C", 4, 4])
    return model


def test_shrink_value_info_gives_kept_axes_their_kept_count():
    model = shrink_model()
    keeps = {("h", 1): np.array([0, 2, 5]), ("r", 1): np.array([0, 2, 5]), ("w1", 0): np.array([0, 2, 5])}
    result = ShrinkValueInfo(keeps)(model)
    assert value_info(model) == {"h": ["N", 3, 4, 4], "r": ["N", 3, 4, 4]}
    assert result.modified
    assert result.stats == {"dims_updated": 2}
    assert [d.HasField("dim_value") for d in model.graph.value_info[1].type.tensor_type.shape.dim] == [
        False,
        True,
        True,
        True,
    ]
    assert [list(t.dims) for t in model.graph.initializer] == [[8, 3, 1, 1], [2, 8, 1, 1]]  # not its job


def test_shrink_value_info_with_two_axes_of_one_tensor():
    model = shrink_model()
    result = ShrinkValueInfo({("h", 1): np.arange(5), ("h", 3): np.array([1, 3])})(model)
    assert value_info(model)["h"] == ["N", 5, 4, 2]
    assert value_info(model)["r"] == ["N", "C", 4, 4]
    assert result.stats == {"dims_updated": 2}


def test_shrink_value_info_reports_unmodified_when_sizes_already_match():
    model = shrink_model()
    keeps = {("h", 1): np.arange(8), ("absent", 0): np.array([0]), ("h", 7): np.array([0])}
    result = ShrinkValueInfo(keeps)(model)
    assert not result.modified
    assert result.stats == {"dims_updated": 0}
    assert value_info(model) == {"h": ["N", 8, 4, 4], "r": ["N", "C", 4, 4]}


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


# -- RemoveDeadNodes ------------------------------------------------------------------------

DEAD_TEXT = """g (float[2, 4] x) => (float[2, 4] y) {
    h = Add (x, b)
    y = Relu (h)
    d = Sigmoid (x)
    e = Mul (d, c) }"""


def dead_model() -> onnx.ModelProto:
    model = parse(
        DEAD_TEXT,
        {
            "b": np.ones(4, np.float32),
            "c": np.ones(4, np.float32),
            "unused": np.ones(3, np.float32),
        },
    )
    for name in ("h", "d", "e"):
        declare(model, name, [2, 4])
    return model


def test_dead_nodes_initializers_and_value_info_are_removed():
    model = dead_model()
    result = RemoveDeadNodes()(model)
    assert [n.op_type for n in model.graph.node] == ["Add", "Relu"]
    assert [t.name for t in model.graph.initializer] == ["b"]
    assert list(value_info(model)) == ["h"]
    assert result.modified
    assert result.stats == {"nodes_removed": 2, "initializers_removed": 2}
    onnx.checker.check_model(model, full_check=True)


def test_a_dead_initializer_alone_is_a_modification():
    model = parse(
        "g (float[2] x) => (float[2] y) { y = Relu (x) }",
        {"unused": np.ones(2, np.float32)},
    )
    result = RemoveDeadNodes()(model)
    assert result.modified
    assert result.stats == {"nodes_removed": 0, "initializers_removed": 1}
    assert not model.graph.initializer


def test_a_live_graph_is_unmodified():
    model = dead_model()
    RemoveDeadNodes()(model)
    before = model.SerializeToString()
    result = RemoveDeadNodes()(model)
    assert not result.modified
    assert result.stats == {"nodes_removed": 0, "initializers_removed": 0}
    assert model.SerializeToString() == before


def test_initializers_read_by_a_subgraph_stay():
    # the If's branches read `b` and `c` from the outer scope: both stay, and the If node too
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Mul", ["x", "c"], ["f"])],
        "else",
        [],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Neg", ["x"], ["dead"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[
            numpy_helper.from_array(np.ones(2, np.float32), "b"),
            numpy_helper.from_array(np.ones(2, np.float32), "c"),
            numpy_helper.from_array(np.ones(2, np.float32), "unused"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    result = RemoveDeadNodes()(model)
    assert [n.op_type for n in model.graph.node] == ["If"]
    assert [t.name for t in model.graph.initializer] == ["b", "c"]
    assert result.stats == {"nodes_removed": 1, "initializers_removed": 1}


@pytest.mark.parametrize(
    ("name", "data_type", "dims"),
    [
        ("w", onnx.TensorProto.FLOAT, (64, 3, 7, 7)),
        ("blocks.0.norm.weight", onnx.TensorProto.FLOAT16, (128,)),
        ("scalar", onnx.TensorProto.INT64, ()),
        ("wide", onnx.TensorProto.BFLOAT16, (300_000, 1)),
    ],
)
def test_typed_value_info_bytes_match_onnx_helper(name: str, data_type: int, dims: tuple[int, ...]) -> None:
    # the skeleton declares large weights as typed inputs written straight to protobuf bytes
    expected = onnx.helper.make_tensor_value_info(name, data_type, list(dims)).SerializeToString()
    assert shapes_mod._typed_value_info(name, data_type, dims) == expected


def test_slice_weights_uses_values_already_read_only_while_they_fit_the_tensor():
    def weight(model):
        return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))

    model = conv_model()
    values = np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    keep = {("w", 0): np.array([1, 3])}
    SliceWeights(keep, read={"w": values})(model)
    np.testing.assert_array_equal(weight(model), values[[1, 3]])
    # values of another shape (or dtype) than the tensor now has are not its values: read the tensor
    model = conv_model()
    stale = {"w": np.zeros((5, 3, 3, 3), np.float32)}
    SliceWeights(keep, read=stale)(model)
    np.testing.assert_array_equal(weight(model), np.ones((2, 3, 3, 3)))
    model = conv_model()
    SliceWeights(keep, read={"w": values.astype(np.float64)})(model)
    np.testing.assert_array_equal(weight(model), np.ones((2, 3, 3, 3)))


def test_a_constant_rewritten_in_place_leaves_the_values_read_before():
    """RewriteNodes edits shape constants in place when one node reads them; values read out of
    the model earlier (by scoring, for SliceWeights to reuse) are then stale and must go. A
    constant other nodes read too is cloned instead, and the original stays valid."""
    from onnxprune.analysis import RuleContext
    from onnxprune.passes.rewriters import NodeEditor

    model = parse(
        """g (float[N, 8] x) => (float[N, 2, 4] y, float[N, 4, 2] z)
            <int64[3] s = {0, 2, 4}, int64[3] t = {0, 4, 2}> {
            y = Reshape (x, s)
            z = Reshape (x, t)
            w = Reshape (x, t) }"""
    )
    read = {"s": np.array([0, 2, 4]), "t": np.array([0, 4, 2])}
    edit = NodeEditor(model, RuleContext(model), {}, read)
    reshape_y, reshape_z = model.graph.node[0], model.graph.node[1]
    edit.set_const_input(reshape_y, 1, np.array([0, 4, 2], np.int64))  # only reader: in place
    edit.set_const_input(reshape_z, 1, np.array([0, 2, 4], np.int64))  # shared: cloned
    assert "s" not in read
    assert "t" in read and reshape_z.input[1] != "t"


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
