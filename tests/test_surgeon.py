"""The onnx-graphsurgeon wrapper (onnxprune/surgeon.py): a round trip through it keeps what a
plain graphsurgeon round trip loses (node metadata, value_info), and weights never change."""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from onnxprune.surgeon import rewire
from tests.conftest import MODELS

DYNAMO = MODELS / "torchvision" / "resnet18_dynamo.onnx"


def metadata(model: onnx.ModelProto) -> dict[str, list[tuple[str, str]]]:
    return {n.output[0]: [(p.key, p.value) for p in n.metadata_props] for n in model.graph.node}


def test_a_plain_graphsurgeon_round_trip_loses_metadata_and_value_info():
    # the loss the wrapper exists for (benchmarks/graphsurgeon_roundtrip.md); if graphsurgeon
    # stops losing them, the wrapper's restoring is moot and this says so
    model = onnx.shape_inference.infer_shapes(onnx.load(DYNAMO))
    assert any(n.metadata_props for n in model.graph.node)
    plain = gs.export_onnx(gs.import_onnx(model))
    assert not any(n.metadata_props for n in plain.graph.node)
    assert len(plain.graph.value_info) < len(model.graph.value_info)


def test_a_no_op_rewire_keeps_nodes_metadata_value_info_and_weights():
    model = onnx.shape_inference.infer_shapes(onnx.load(DYNAMO))
    before = onnx.ModelProto()
    before.CopyFrom(model)
    rewire(model, lambda graph: None)
    assert [n.output[0] for n in model.graph.node] == [n.output[0] for n in before.graph.node]
    assert metadata(model) == metadata(before)
    assert {v.name: v for v in model.graph.value_info} == {v.name: v for v in before.graph.value_info}
    assert list(model.graph.initializer) == list(before.graph.initializer)
    assert list(model.graph.input) == list(before.graph.input)
    assert list(model.graph.output) == list(before.graph.output)
    assert (model.ir_version, list(model.opset_import), model.producer_name) == (
        before.ir_version,
        list(before.opset_import),
        before.producer_name,
    )
    onnx.checker.check_model(model, full_check=True)


def test_a_bypass_keeps_what_survives_and_drops_what_does_not():
    model = onnx.shape_inference.infer_shapes(onnx.load(DYNAMO))
    before = metadata(model)
    info_before = {v.name for v in model.graph.value_info}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    target = adds[0]  # the first residual Add: `out += identity`, so its second input is the skip

    def bypass(graph: gs.Graph) -> None:
        add = next(n for n in graph.nodes if n.outputs and n.outputs[0].name == target.output[0])
        add.op, add.inputs = "Identity", [add.inputs[1]]

    rewire(model, bypass)
    kept = metadata(model)
    assert len(kept) < len(before)  # the branch's nodes went
    assert all(kept[name] == before[name] for name in kept)
    computed = {o for n in model.graph.node for o in n.output} | {t.name for t in model.graph.initializer}
    info = {v.name for v in model.graph.value_info}
    assert info == info_before & computed
    read = {i for n in model.graph.node for i in n.input}
    assert all(t.name in read for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
