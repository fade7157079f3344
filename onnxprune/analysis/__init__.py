"""Channel dependency analysis: coupling groups and barriers (see `dependency`)."""

from onnxprune.analysis.dependency import Barrier, DependencyAnalysis, Group, Member, analyze_model
from onnxprune.analysis.flow import ChannelFlow, Dim, FlowBuilder, RuleContext
from onnxprune.analysis.index_map import IndexMap

__all__ = [
    "Barrier",
    "ChannelFlow",
    "DependencyAnalysis",
    "Dim",
    "FlowBuilder",
    "Group",
    "IndexMap",
    "Member",
    "RuleContext",
    "analyze_model",
]
