"""Bad and unusual inputs: each has a documented outcome, a one-line message, and leaves the input
untouched and nothing partial at the output path."""

from __future__ import annotations

import gc
import hashlib
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.cli import main
from onnxprune.errors import EXIT_MODEL, EXIT_OK, EXIT_USAGE
from tests.conftest import MODELS

RNG = np.random.default_rng(7)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def conv_net(opset: int = 17, ir_version: int = 8, dtype=np.float32, batch="N", names: bool = True):
    """x -> Conv(8) -> Relu -> Split(4, 4) -> Concat -> Conv(4) -> y, built for any opset."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w1 = numpy_helper.from_array(RNG.standard_normal((8, 3, 3, 3)).astype(dtype), "w1")
    b1 = numpy_helper.from_array(RNG.standard_normal(8).astype(dtype), "b1")
    w2 = numpy_helper.from_array(RNG.standard_normal((4, 8, 1, 1)).astype(dtype), "w2")
    inits = [w1, b1, w2]
    if opset >= 18:
        split = helper.make_node("Split", ["r"], ["s0", "s1"], axis=1, num_outputs=2)
    elif opset >= 13:
        inits.append(numpy_helper.from_array(np.array([4, 4], np.int64), "sizes"))
        split = helper.make_node("Split", ["r", "sizes"], ["s0", "s1"], axis=1)
    else:
        split = helper.make_node("Split", ["r"], ["s0", "s1"], axis=1, split=[4, 4])
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        split,
        helper.make_node("Concat", ["s1", "s0"], ["c"], axis=1),
        helper.make_node("Conv", ["c", "w2"], ["y"]),
    ]
    for i, node in enumerate(nodes):
        node.name = f"n{i}" if names else ""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", elem, [batch, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    onnx.checker.check_model(model, full_check=True)
    return model


def _prune_and_validate(model, **kwargs):
    result = onnxprune.prune(model, ratio=0.5)
    report = onnxprune.validate(model, result.model, result.plan, **kwargs)
    assert report, str(report)
    return result


@pytest.mark.parametrize(
    ("opset", "ir_version"), [(11, 7), (13, 7), (15, 8), (17, 8), (18, 8), (19, 9), (21, 10), (23, 10)]
)
def test_opsets_and_ir_versions(opset, ir_version):
    model = conv_net(opset, ir_version)
    result = _prune_and_validate(model)
    assert result.plan.removes_anything
    assert result.model.ir_version == ir_version
    assert result.model.opset_import[0].version == opset


def test_float16_weights_prune_and_keep_their_type():
    model = conv_net(dtype=np.float16)
    result = _prune_and_validate(model)
    assert result.plan.removes_anything
    assert all(t.data_type == TensorProto.FLOAT16 for t in result.model.graph.initializer if t.name == "w1")


def test_bfloat16_weights_are_left_as_they_are_and_reported():
    """ONNX Runtime's CPU kernels do not compute in bfloat16: such weights reach the convs through
    a Cast, so they are computed at run time for the analyzer, which leaves them and says why."""
    model = conv_net()
    for init in list(model.graph.initializer):
        if init.name in ("w1", "w2"):
            values = numpy_helper.to_array(init)
            bf16 = helper.make_tensor(
                f"{init.name}_bf16", TensorProto.BFLOAT16, values.shape, values.flatten()
            )
            model.graph.initializer.remove(init)
            model.graph.initializer.append(bf16)
            cast = helper.make_node(
                "Cast", [bf16.name], [init.name], to=TensorProto.FLOAT, name=f"cast_{init.name}"
            )
            model.graph.node.insert(0, cast)
    onnx.checker.check_model(model, full_check=True)
    result = onnxprune.prune(model, ratio=0.5)
    assert not any(s.tensor.endswith("_bf16") for s in result.plan.slices)
    assert any("computed at run time by Cast" in str(b) for b in result.analysis.barriers)
    assert onnxprune.validate(model, result.model, result.plan)


def test_nodes_without_names_and_duplicate_names():
    unnamed = conv_net(names=False)
    assert _prune_and_validate(unnamed).plan.removes_anything
    duplicate = conv_net()
    for node in duplicate.graph.node:
        node.name = "same"
    result = onnxprune.prune(duplicate, ratio=0.5)  # ONNX Runtime refuses the input; the output runs
    names = [n.name for n in result.model.graph.node]
    assert len(set(names)) == len(names) and names[0] == "same"
    renamed = onnx.ModelProto()
    renamed.CopyFrom(duplicate)
    for node, name in zip(renamed.graph.node, names, strict=False):
        node.name = name
    assert onnxprune.validate(renamed, result.model, result.plan)


def test_dynamic_spatial_dims_need_shapes_only_for_validation(tmp_path):
    model = conv_net()
    for vi in [*model.graph.input, *model.graph.output]:
        for d in vi.type.tensor_type.shape.dim[2:]:
            d.dim_param = "S"
    path, out = tmp_path / "dyn.onnx", tmp_path / "out.onnx"
    onnx.save(model, path)
    assert main([str(path), str(out), "--ratio", "0.5"]) == EXIT_OK
    code = main([str(path), str(tmp_path / "v.onnx"), "--ratio", "0.5", "--validate"])
    assert code == EXIT_USAGE
    assert (
        main(
            [
                str(path),
                str(tmp_path / "v.onnx"),
                "--ratio",
                "0.5",
                "--validate",
                "--input-shape",
                "x:2x3x6x6",
            ]
        )
        == EXIT_OK
    )


def test_custom_domain_op_pins_what_it_touches():
    model = conv_net()
    model.graph.node[1].op_type = "MyRelu"
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    analysis = onnxprune.analyze(model)
    assert any("com.example::MyRelu" in str(b) for b in analysis.barriers)
    result = onnxprune.prune(model, ratio=0.5)
    kept = {s.tensor for s in result.plan.slices}
    assert "w2" not in kept and "b1" not in kept  # everything around the unknown op stays


def test_qdq_weights_are_sliced_with_their_channels():
    """A DequantizeLinear of an initializer is a weight (issue 17; it used to pin): its int8
    values are sliced with the conv's filters, and the result is mask-equivalent."""
    model = conv_net()
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    q = numpy_helper.from_array(RNG.integers(-100, 100, (8, 3, 3, 3)).astype(np.int8), "w1_q")
    model.graph.initializer.extend([scale, zero, q])
    model.graph.node.insert(
        0, helper.make_node("DequantizeLinear", ["w1_q", "scale", "zero"], ["w1_dq"], name="dq")
    )
    model.graph.node[1].input[1] = "w1_dq"
    onnx.checker.check_model(model, full_check=True)
    analysis = onnxprune.analyze(model)
    assert not any("computed at run time by DequantizeLinear" in str(b) for b in analysis.barriers)
    result = onnxprune.prune(model, ratio=0.5)
    sliced = {(s.tensor, s.axis, s.role) for s in result.plan.slices}
    assert ("w1_q", 0, "out") in sliced and ("b1", 0, "out") in sliced
    assert onnxprune.validate(model, result.model, result.plan)


def test_control_flow_pins_tensors_read_inside_subgraphs():
    model = conv_net()
    then_g = helper.make_graph(
        [helper.make_node("Relu", ["h"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Sigmoid", ["h"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node[1].CopyFrom(
        helper.make_node("If", ["cond"], ["r"], name="if", then_branch=then_g, else_branch=else_g)
    )
    onnx.checker.check_model(model, full_check=True)
    analysis = onnxprune.analyze(model)
    assert any("subgraph of If" in str(b) for b in analysis.barriers)
    result = onnxprune.prune(model, ratio=0.5)
    assert "w1" not in {s.tensor for s in result.plan.slices}
    assert onnxprune.validate(model, result.model, result.plan)


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "in.onnx"
    shutil.copy(MODELS / "default.onnx", path)
    return path


def _write_variant(kind: str, tmp_path, model_path):
    data = model_path.read_bytes()
    path = tmp_path / f"{kind}.onnx"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "tensor-not-model":
        path.write_bytes(numpy_helper.from_array(np.ones(16, np.float32), "t").SerializeToString())
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing-external-data":
        model = onnx.load(model_path)
        onnx.save_model(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
        (tmp_path / "weights.bin").unlink()
    elif kind == "weight-type-mismatch":  # float bytes declared as strings: no values decode
        model = onnx.load(model_path)
        weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
        weight.data_type = onnx.TensorProto.STRING
        onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("kind", "code", "message"),
    [
        ("truncated", EXIT_MODEL, "not an ONNX model"),
        ("tensor-not-model", EXIT_MODEL, "not an ONNX model"),
        ("directory", EXIT_USAGE, "is a directory"),
        ("missing-external-data", EXIT_MODEL, "external data"),
        ("weight-type-mismatch", EXIT_MODEL, "(STRING, dims"),
    ],
)
def test_unreadable_models(kind, code, message, tmp_path, model_path, capsys):
    bad = _write_variant(kind, tmp_path, model_path)
    out = tmp_path / "out.onnx"
    assert main([str(bad), str(out), "--ratio", "0.4"]) == code
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("enabled", [True, False])
def test_prune_and_analyze_leave_the_garbage_collector_as_they_found_it(enabled, tmp_path, model_path):
    """The collector is paused while a prune or an analysis runs (they allocate many long-lived
    tuples), and given back as it was, also when the input is bad."""
    bad = _write_variant("truncated", tmp_path, model_path)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        seen = []
        original = onnxprune.stages.analyze_model

        def spy(*args, **kwargs):
            seen.append(gc.isenabled())
            return original(*args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(onnxprune.stages, "analyze_model", spy)
            onnxprune.prune(model_path, ratio=0.4)
            onnxprune.analyze(model_path)
        assert seen == [False, False]
        assert gc.isenabled() is enabled
        with pytest.raises(onnxprune.ModelError):
            onnxprune.prune(bad, ratio=0.4)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_output_that_cannot_be_written(tmp_path, model_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = _digest(model_path)
    assert main([str(model_path), str(blocker / "out.onnx"), "--ratio", "0.4"]) == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err
    assert main([str(model_path), str(tmp_path), "--ratio", "0.4"]) == EXIT_USAGE
    assert _digest(model_path) == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert (
        main([str(tmp_path / "nope.onnx"), str(tmp_path / "o.onnx"), "--ratio", "0.4", "--debug"])
        == EXIT_USAGE
    )
    assert "Traceback" in capsys.readouterr().err


def test_external_data_models_load_and_prune(tmp_path, model_path):
    model = onnx.load(model_path)
    ext = tmp_path / "ext.onnx"
    onnx.save_model(model, ext, save_as_external_data=True, location="ext.bin", size_threshold=0)
    result = onnxprune.prune(ext, ratio=0.4)
    assert onnxprune.validate(model_path, result.model, result.plan)
