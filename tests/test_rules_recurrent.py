"""Channel rules of recurrent layers (LSTM, GRU, RNN): a hidden unit is one row of every gate in
W, R and B (both halves), R's column, the initial states' and outputs' last position, in both
directions together; the input feature axis is W's columns; `hidden_size` is rewritten."""

from __future__ import annotations

import pytest

from tests.rule_cases import (
    Case,
    attr_is,
    check_pruning,
    check_structure,
    ids,
    one_group_holds,
    rewrite_is,
    runnable,
    shapes,
    then,
)

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQ, FEATURES, HIDDEN = 5, 6, 8


def recurrent(
    op: str,
    *,
    directions: int = 1,
    attrs: str = "",
    extra_inputs: str = "",
    extra_weights: str = "",
    outputs: str = "y_seq",
    tail: str = "",
    graph_outputs: str = "",
    batch_first: bool = False,
    computed_w: bool = False,
) -> str:
    """`x -> MatMul(w1) -> h -> op -> Y -> [Transpose] -> Reshape(merge directions) -> MatMul(w2) -> y`.

    The op reads h (FEATURES features) with hidden size HIDDEN; `extra_inputs` follows `h, w, r`
    (", b" and so on), `extra_weights` declares them; `outputs` names the op's outputs. With
    `computed_w`, W is a weight times a graph input `s`.
    """
    g, width = GATES[op], directions * HIDDEN
    direction = '"bidirectional"' if directions == 2 else '"forward"'
    layout = ", layout = 1" if batch_first else ""
    x_shape = "1, 5, 3" if batch_first else "5, 1, 3"
    perm = "" if batch_first else "[perm] yt = Transpose <perm = [0, 2, 1, 3]> (y_seq)"
    merged_from = "y_seq" if batch_first else "yt"
    target = "1, 5, " + str(width) if batch_first else "5, 1, " + str(width)
    attributes = f"hidden_size = {HIDDEN}, direction = {direction}{layout}{attrs}"
    scale = ", float s" if computed_w else ""
    w_name, computed = ("w0", "[scale] w = Mul (w0, s)") if computed_w else ("w", "")
    return f"""g (float[{x_shape}] x{scale}) => (float[{x_shape[:-1]}2] y{graph_outputs})
    <float[3, {FEATURES}] w1, float[{directions}, {g * HIDDEN}, {FEATURES}] {w_name},
     float[{directions}, {g * HIDDEN}, {HIDDEN}] r, float[{width}, 2] w2,
     int64[3] target = {{{target}}}{extra_weights}> {{
    [fc1] h = MatMul (x, w1)
    {computed}
    [rnn] {outputs} = {op} <{attributes}> (h, w, r{extra_inputs})
    {perm}
    [merge] m = Reshape ({merged_from}, target)
    [fc2] y = MatMul (m, w2)
    {tail}
}}"""


def zero_states_dropped(*nodes: str):
    """The named recurrent nodes of the pruned model read no initial state (zero, the default)."""

    def check(analysis, result, model):
        for name in nodes:
            node = next(n for n in result.model.graph.node if n.name == name)
            assert len(node.input) <= 5 or not node.input[5], list(node.input)

    return check


CASES = [
    Case(
        "lstm-forward-bias",
        recurrent("LSTM", extra_inputs=", b", extra_weights=", float[1, 64] b"),
        groups=2,
        prunable={"w:1": HIDDEN, "r:1": HIDDEN, "r:2": HIDDEN, "b:1": HIDDEN, "w2:0": HIDDEN}
        | {"w1:1": FEATURES},
        rewrites=(("rnn", "hidden_size"), ("merge", "shape")),
        check=then(
            one_group_holds("w:1", "r:1", "r:2", "b:1", "w2:0"),
            one_group_holds("w1:1", "w:2"),
            attr_is("rnn", "hidden_size", 4),
            rewrite_is("rnn", "hidden_size", HIDDEN, 4),
            shapes(w=[1, 16, 3], r=[1, 16, 4], b=[1, 32], w2=[4, 2], w1=[3, 3]),
        ),
    ),
    Case(
        # every state input and output, peepholes, two directions; Y_h and Y_c are read on
        "lstm-bidirectional-states-peepholes",
        recurrent(
            "LSTM",
            directions=2,
            extra_inputs=", b, , h0, c0, p",
            extra_weights=(
                ", float[2, 64] b, float[2, 1, 8] h0, float[2, 1, 8] c0, float[2, 24] p, float[8, 2] w3"
            ),
            outputs="y_seq, y_h, y_c",
            tail="[sum] hc = Add (y_h, y_c)\n    [fc3] z = MatMul (hc, w3)",
            graph_outputs=", float[2, 1, 2] z",
        ),
        groups=2,
        prunable={"w:1": HIDDEN, "b:1": HIDDEN, "h0:2": HIDDEN, "c0:2": HIDDEN, "p:1": HIDDEN}
        | {"w3:0": HIDDEN},
        pinned={"w:0": ("rnn", "LSTM")},
        rewrites=(("rnn", "hidden_size"),),
        check=then(
            one_group_holds("w:1", "r:2", "b:1", "h0:2", "c0:2", "p:1", "w2:0", "w3:0"),
            shapes(w=[2, 16, 3], r=[2, 16, 4], b=[2, 32], h0=[2, 1, 4], c0=[2, 1, 4], p=[2, 12], w2=[8, 2]),
        ),
    ),
    Case(
        "gru-bidirectional-linear-before-reset",
        recurrent(
            "GRU",
            directions=2,
            attrs=", linear_before_reset = 1",
            extra_inputs=", b",
            extra_weights=", float[2, 48] b",
        ),
        groups=2,
        prunable={"w:1": HIDDEN, "r:1": HIDDEN, "b:1": HIDDEN, "w2:0": HIDDEN, "w1:1": FEATURES},
        rewrites=(("rnn", "hidden_size"), ("merge", "shape")),
        check=shapes(w=[2, 12, 3], r=[2, 12, 4], b=[2, 24], w2=[8, 2]),
    ),
    Case(
        "gru-forward-no-bias",
        recurrent("GRU"),
        groups=2,
        prunable={"w:1": HIDDEN, "r:2": HIDDEN, "w2:0": HIDDEN},
        check=shapes(w=[1, 12, 3], r=[1, 12, 4]),
    ),
    Case(
        "rnn-bidirectional",
        recurrent("RNN", directions=2, extra_inputs=", b", extra_weights=", float[2, 16] b"),
        groups=2,
        prunable={"w:1": HIDDEN, "r:1": HIDDEN, "r:2": HIDDEN, "b:1": HIDDEN, "w2:0": HIDDEN},
        rewrites=(("rnn", "hidden_size"),),
        check=shapes(w=[2, 4, 3], r=[2, 4, 4], b=[2, 8], w2=[8, 2]),
    ),
    Case(
        "lstm-batch-first-layout-opset-14",
        recurrent("LSTM", batch_first=True, extra_inputs=", b", extra_weights=", float[1, 64] b"),
        opset=14,
        groups=2,
        prunable={"w:1": HIDDEN, "w2:0": HIDDEN, "w1:1": FEATURES},
        rewrites=(("rnn", "hidden_size"),),
        runs=False,  # ONNX Runtime 1.31 refuses layout = 1 ("Batchwise recurrent operations")
    ),
    Case(
        # the final state is a graph output: the hidden units stay, the input features still go
        "lstm-state-is-graph-output",
        recurrent("LSTM", outputs="y_seq, y_h", graph_outputs=", float[1, 1, 8] y_h"),
        groups=1,
        prunable={"w1:1": FEATURES, "w:2": FEATURES},
        pinned={"w:1": ("<graph>", "output"), "r:2": ("<graph>", "output"), "w2:0": ("<graph>", "output")},
    ),
    Case(
        # W computed at run time (scaled by a graph input): nothing about the layer is known
        "lstm-weight-computed",
        recurrent("LSTM", computed_w=True),
        groups=0,
        pinned={"w1:1": ("rnn", "LSTM"), "w2:0": ("rnn", "LSTM"), "w0:1": ("rnn", "LSTM")},
    ),
]

# The dynamo exporter rebuilds R from the module's parameter at run time (the gates reordered by
# Slices and a Concat, the direction axis unsqueezed); both exporters give the layers of a stack
# one zeros tensor for their initial states, sliced per layer.
REARRANGED = """g (float[5, 1, 3] x) => (float[5, 1, 2] y)
    <float[3, 6] w1, float[1, 32, 6] w, float[32, 8] rw, float[8, 2] w2, int64[1] zero = {0},
     int64[1] s8 = {8}, int64[1] s16 = {16}, int64[1] s24 = {24}, int64[1] s32 = {32},
     int64[3] target = {5, 1, 8}> {
    [fc1] h = MatMul (x, w1)
    [gate_i] g0 = Slice (rw, zero, s8, zero)
    [gate_f] g1 = Slice (rw, s16, s24, zero)
    [gate_o] g2 = Slice (rw, s8, s16, zero)
    [gate_c] g3 = Slice (rw, s24, s32, zero)
    [gates] rc = Concat <axis = 0> (g0, g1, g2, g3)
    [direction] r = Unsqueeze (rc, zero)
    [rnn] y_seq = LSTM <hidden_size = 8> (h, w, r)
    [merge] m = Reshape (y_seq, target)
    [fc2] y = MatMul (m, w2)
}"""
STACKED_ZERO_STATES = """g (float[5, 1, 3] x) => (float[5, 1, 2] y)
    <float[3, 6] w1, float[1, 24, 6] wa, float[1, 24, 8] ra, float[1, 24, 8] wb, float[1, 24, 8] rb,
     float[8, 2] w2, int64[3] dims = {2, 1, 8}, int64[1] zero = {0}, int64[1] one = {1}, int64[1] two = {2},
     int64[3] target = {5, 1, 8}> {
    [fc1] h = MatMul (x, w1)
    [zeros] z = ConstantOfShape (dims)
    [state_a] ha = Slice (z, zero, one, zero)
    [state_b] hb = Slice (z, one, two, zero)
    [layer_a] ya = GRU <hidden_size = 8> (h, wa, ra, , , ha)
    [merge_a] ma = Reshape (ya, target)
    [layer_b] yb = GRU <hidden_size = 8> (ma, wb, rb, , , hb)
    [merge_b] mb = Reshape (yb, target)
    [fc2] y = MatMul (mb, w2)
}"""

CASES += [
    Case(
        # Y merged with its directions by one Reshape and Y_h by another: only choosing the hidden
        # factor in both frees the hidden units (the analyzer tries such choices together)
        "lstm-bidirectional-y-and-state-both-reshaped",
        recurrent(
            "LSTM",
            directions=2,
            extra_inputs=", b",
            extra_weights=", float[2, 64] b, int64[2] flat = {1, 16}, float[16, 2] w3",
            outputs="y_seq, y_h",
            tail="[tp] ht = Transpose <perm = [1, 0, 2]> (y_h)\n    [flat] hf = Reshape (ht, flat)\n"
            "    [fc3] z = MatMul (hf, w3)",
            graph_outputs=", float[1, 2] z",
        ),
        groups=2,
        prunable={"w:1": HIDDEN, "r:2": HIDDEN, "w2:0": HIDDEN, "w3:0": HIDDEN},
        rewrites=(("rnn", "hidden_size"), ("merge", "shape"), ("flat", "shape")),
        check=shapes(w=[2, 16, 3], w2=[8, 2], w3=[8, 2]),
    ),
    Case(
        "lstm-recurrence-weight-rearranged",
        REARRANGED,
        groups=2,
        prunable={"rw:0": HIDDEN, "rw:1": HIDDEN, "w:1": HIDDEN, "w2:0": HIDDEN},
        rewrites=(("rnn", "hidden_size"), ("gate_f", "starts/ends")),
        check=then(one_group_holds("rw:0", "rw:1", "w:1", "w2:0"), shapes(rw=[16, 4], w=[1, 16, 3])),
    ),
    Case(
        # one zeros tensor for both layers: disconnected, not coupling the two hidden sizes
        "gru-stacked-zero-initial-states",
        STACKED_ZERO_STATES,
        groups=3,
        prunable={"ra:2": HIDDEN, "rb:2": HIDDEN, "w1:1": FEATURES},
        rewrites=(("layer_a", "hidden_size"), ("layer_b", "hidden_size"), ("layer_a", "input 5")),
        check=then(
            shapes(ra=[1, 12, 4], rb=[1, 12, 4], wb=[1, 12, 4]), zero_states_dropped("layer_a", "layer_b")
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
