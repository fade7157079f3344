"""Compensation of a structural prune: refit kept weights so the pruned model tracks the original.

`compensate(original, pruned, keeps, data, method="bias" | "lsq")` changes `pruned` in place and
returns a `CompensationReport` whose `updates` go into the plan. One module per job:
`consumers` (which nodes read pruned channels, their weights in one layout, dependency levels),
`collect` (runs of both models reduced to sums), `solve` (the affine fits and their held-out
error), `means` (data-free means from BatchNormalization), `fold` (writing a fit into weights
and bias), `api` (the entry point and the report).
"""

from onnxprune.compensate.api import CompensationReport, ConsumerRecord, compensate

__all__ = ["CompensationReport", "ConsumerRecord", "compensate"]
