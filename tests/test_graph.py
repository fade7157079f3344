"""Graph queries (`onnxprune.graph`), above all what a subgraph reads from the scope around it.

Before the queries were shared, two versions disagreed: the analyzer's subtracted the names a
body defines but missed a body output that names an outer tensor directly; cleanup's counted
every name a body node reads, its own locals included (a Loop's iteration counter, a value the
body computes), so it kept outer initializers alive because a body defined a value of the same name.
"""

from __future__ import annotations

import onnx
from onnx import helper

from onnxprune import graph as g
from onnxprune.passes import RemoveDeadNodes

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def parse(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(HEADER + text)


def test_if_branch_reads_minus_its_own_names():
    m = parse("""g (bool c, float[2] x, float[2] w) => (float[2] y) {
        y = If(c) <then_branch = t () => (float[2] a) { h = Relu(x)  a = Add(h, w) },
                   else_branch = e () => (float[2] b) { b = Identity(x) }> }""")
    assert g.subgraph_reads(m.graph.node[0]) == {"x", "w"}


def test_branch_output_naming_an_outer_tensor_is_a_read():
    # onnx.checker and ONNX Runtime refuse such a branch; counting the name as read is the
    # conservative answer for a model that gets this far
    m = parse("""g (bool c, float[2] x, float[2] z) => (float[2] y) {
        y = If(c) <then_branch = t () => (float[2] x) { },
                   else_branch = e () => (float[2] z) { }> }""")
    assert g.subgraph_reads(m.graph.node[0]) == {"x", "z"}


def test_loop_body_inputs_and_locals_are_not_outer_reads():
    m = parse("""g (int64 n, bool c, float[2] x0, float[2] w) => (float[2] y) {
        y = Loop(n, c, x0) <body = b (int64 i, bool cond, float[2] x) => (bool co, float[2] xo) {
            co = Identity(cond)  s = Mul(x, w)  xo = Add(s, x) }> }""")
    assert g.subgraph_reads(m.graph.node[0]) == {"w"}


def test_nested_subgraph_reads_pass_through_minus_names_defined_between():
    # the inner If reads `v` (defined by the Loop body: local) and `w` (outer: a read)
    m = parse("""g (int64 n, bool c, float[2] x0, float[2] w) => (float[2] y) {
        y = Loop(n, c, x0) <body = b (int64 i, bool cond, float[2] x) => (bool co, float[2] xo) {
            co = Identity(cond)
            v = Relu(x)
            xo = If(cond) <then_branch = t () => (float[2] a) { a = Add(v, w) },
                           else_branch = e () => (float[2] v) { }> }> }""")
    assert g.subgraph_reads(m.graph.node[0]) == {"w"}
    body = m.graph.node[0].attribute[0].g
    assert g.subgraph_reads(body.node[2]) == {"v", "w"}


def test_outputs_and_subgraph_reads():
    m = parse("""g (bool c, float[2] x, float[2] w) => (float[2] y) {
        y = If(c) <then_branch = t () => (float[2] a) { a = Add(x, w) },
                   else_branch = e () => (float[2] b) { b = Identity(x) }> }""")
    assert g.outputs_and_subgraph_reads(m.graph) == {"y", "x", "w"}


def test_cleanup_drops_an_outer_initializer_only_a_body_local_shadows_by_name():
    # a body defines `h` itself; an unrelated outer initializer `h` is dead
    m = parse("""g (bool c, float[2] x) => (float[2] y) <float[2] h = {1.0, 2.0}> {
        y = If(c) <then_branch = t () => (float[2] a) { h = Relu(x)  a = Neg(h) },
                   else_branch = e () => (float[2] b) { b = Identity(x) }> }""")
    RemoveDeadNodes()(m)
    assert not m.graph.initializer


def test_producers_consumers_and_reader_counts():
    m = parse("g (float[2] x) => (float[2] y, float[2] z) { t = Relu(x)  y = Add(t, t)  z = Neg(t) }")
    assert g.producers(m.graph.node)["t"].op_type == "Relu"
    assert [n.op_type for n in g.consumers(m.graph.node)["t"]] == ["Add", "Add", "Neg"]
    assert g.reader_counts(m.graph)["t"] == 3
    assert g.reader_counts(m.graph)["y"] == 1


def test_shapes_from_value_info_inputs_and_initializers():
    m = parse("g (float[N, 3] x) => (float[N, 3] y) <float[3] b = {1.0, 2.0, 3.0}> { y = Add(x, b) }")
    infos = g.value_infos(m.graph)
    assert g.shape_of(infos["x"]) == ("N", 3)
    assert g.static_dims(infos["y"]) == [None, 3]
    assert g.shape_of(m.graph.initializer[0]) == (3,)
    untyped = onnx.ValueInfoProto(name="u")
    assert g.shape_of(untyped) is None and g.static_dims(untyped) is None


def test_domains_and_float_types():
    assert g.is_default_domain("") and g.is_default_domain("ai.onnx")
    assert not g.is_default_domain("com.microsoft")
    assert g.norm_domain("ai.onnx") == ""
    assert g.is_float(onnx.TensorProto.BFLOAT16) and not g.is_float(onnx.TensorProto.INT8)
    assert g.default_opset(parse("g (float[2] x) => (float[2] y) { y = Relu(x) }")) == 17


def test_attribute_graphs_of_plain_attributes_are_empty():
    attr = helper.make_attribute("axis", 1)
    assert g.attribute_graphs(attr) == []
    node = helper.make_node("Relu", ["x"], ["y"])
    assert list(g.node_subgraphs(node)) == [] and g.subgraph_reads(node) == set()


def test_the_analyzer_pins_what_a_nested_body_reads_from_the_main_graph():
    # `h` (a conv output) is read only by Ifs nested in another If's branches: its channels stay
    from onnxprune.analysis import analyze_model
    from onnxprune.passes import PassManager, normalization_passes
    from tests.rule_cases import build

    model = build("""g (float[1, 3, 4, 4] x, bool c) => (float[1, 2, 4, 4] y, float[1, 4, 4, 4] z)
        <float[4, 3, 1, 1] w1, float[2, 4, 1, 1] w2> {
        h = Conv(x, w1)
        y = Conv(h, w2)
        z = If(c) <then_branch = t () => (float[1, 4, 4, 4] a) {
                a = If(c) <then_branch = t2 () => (float[1, 4, 4, 4] a2) { a2 = Relu(h) },
                           else_branch = e2 () => (float[1, 4, 4, 4] d2) { d2 = Neg(h) }> },
                   else_branch = e () => (float[1, 4, 4, 4] d) {
                d = If(c) <then_branch = t3 () => (float[1, 4, 4, 4] a3) { a3 = Sigmoid(h) },
                           else_branch = e3 () => (float[1, 4, 4, 4] d3) { d3 = Abs(h) }> }> }""")
    PassManager(normalization_passes()).run(model)
    analysis = analyze_model(model)
    pinned = [b for b in analysis.barriers if b.tensor == "h" and b.op_type == "If"]
    assert pinned, analysis.barriers
    assert not any(m.key == "w1:0" for g in analysis.prunable_groups for m in g.members)
