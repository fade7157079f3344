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


def halves(op: str) -> int:
    """Rows of B: Wb and Rb of every gate."""
    return 2 * GATES[op] * HIDDEN


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


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_analysis(case: Case) -> None:
    check_structure(case)


@pytest.mark.parametrize("case", runnable(CASES), ids=ids(runnable(CASES)))
def test_pruning(case: Case) -> None:
    check_pruning(case)
