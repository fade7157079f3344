"""Weight sparsity: zero entries of Conv/Gemm/MatMul weights without changing any shape
(unstructured per layer or global, N:M), after structural pruning (`onnxprune.stages.Sparsify`).

>>> from onnxprune.sparsity import SparsityOptions
>>> SparsityOptions(nm=(2, 4)).by
'sparsity-2:4'
"""

from onnxprune.sparsity.api import (
    SPARSITY_BY,
    LayerSparsity,
    SparsityOptions,
    SparsityReport,
    nm_of,
    only_sparsity,
    parse_nm,
    sparsify,
)
from onnxprune.sparsity.layout import SparseTarget, nm_violations, sparsity_targets

__all__ = [
    "SPARSITY_BY",
    "LayerSparsity",
    "SparseTarget",
    "SparsityOptions",
    "SparsityReport",
    "nm_of",
    "nm_violations",
    "only_sparsity",
    "parse_nm",
    "sparsify",
    "sparsity_targets",
]
