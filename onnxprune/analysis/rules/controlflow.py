"""Control flow (If, Loop, Scan): not analysed through its bodies, so it pins what it touches.

The node's own inputs and outputs keep every axis, and so does every tensor a body reads from
the enclosing graph (the analyzer pins those for any node with subgraphs). The rest of the
graph, the feed-forward parts before and after, is analysed as usual and prunes.
"""

from __future__ import annotations

import onnx

from onnxprune.analysis.flow import ChannelFlow, FlowBuilder, RuleContext
from onnxprune.analysis.registry import channel_rule


@channel_rule("If", "Loop", "Scan")
def control_flow(node: onnx.NodeProto, ctx: RuleContext) -> ChannelFlow:
    """Every axis of every input and output is pinned, with the reason."""
    flow = FlowBuilder()
    why = (
        f"{node.op_type}: channels are not followed through its subgraphs, so its inputs and "
        "outputs keep their shapes"
    )
    for tensor in [*node.input, *node.output]:
        if tensor:
            flow.pin_tensor(tensor, why)
    return flow.build()
