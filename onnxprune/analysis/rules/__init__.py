"""Channel rules for every supported op, registered on import (explicitly, one module per family)."""

from onnxprune.analysis.rules import (
    attention,
    controlflow,
    conv,
    elementwise,
    layout,
    linear,
    normalization,
    quantized,
    reduce,
)

__all__ = [
    "attention",
    "controlflow",
    "conv",
    "elementwise",
    "layout",
    "linear",
    "normalization",
    "quantized",
    "reduce",
]
