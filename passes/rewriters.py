"""The node rewriters moved to `onnxprune.rewriters` (below the op table, which joins them to
their ops); this name stays for imports written before the move."""

from onnxprune.rewriters import NodeEditor, Rewriter

__all__ = ["NodeEditor", "Rewriter"]
