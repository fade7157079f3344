"""Channel rules for every supported op, registered on import (explicitly, one module per family)."""

from onnxprune.analysis.rules import (
    attention,
    conv,
    elementwise,
    layout,
    linear,
    normalization,
    quantized,
    reduce,
)

__all__ = ["attention", "conv", "elementwise", "layout", "linear", "normalization", "quantized", "reduce"]
