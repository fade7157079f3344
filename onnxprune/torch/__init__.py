"""Carry an onnxprune plan back to the PyTorch module the ONNX model was exported from.

Needs the optional extra ``onnxprune[torch]``. The module gets the pruned architecture (sliced
parameters and buffers, layer sizes, head counts) so that it can be fine-tuned and exported
again; its forward then computes what the pruned ONNX model computes. docs/torch-roundtrip.md
describes how tensors are found under both torch exporters' naming.

>>> import onnxprune, onnxprune.torch  # doctest: +SKIP
>>> result = onnxprune.prune("net.onnx", ratio=0.4)  # doctest: +SKIP
>>> onnxprune.torch.apply_plan(net, result.plan, "net.onnx", pruned=result.model)  # doctest: +SKIP
"""

from onnxprune.torch.apply import AppliedPlan, apply_plan
from onnxprune.torch.mapping import Placement

__all__ = ["AppliedPlan", "Placement", "apply_plan"]
