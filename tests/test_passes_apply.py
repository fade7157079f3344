"""Structured-removal passes (passes/apply.py, onnxprune/rewriters.py): value_info shrinking after
slicing, SliceWeights reusing values read before, constants rewritten in place."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.analysis import RuleContext
from onnxprune.passes import ShrinkValueInfo, SliceWeights
from onnxprune.rewriters import NodeEditor
from tests.pass_models import conv_model, declare, parse, value_info

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


# -- SliceWeights and RewriteNodes -----------------------------------------------------------


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
